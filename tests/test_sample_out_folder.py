"""`agsm sample --out`: a folder holding another run's images is refused (mixing them would leave images its
run.json does not describe) unless --overwrite, which deletes them first."""
import json

import pytest

from agsm.cli import main
from agsm.sample import sample


def test_a_folder_with_images_is_refused_unless_overwrite(sd15_dir, tmp_path, capsys):
    out = tmp_path / "out"
    sample(sd15_dir, ["a red circle", "a blue square"], out, steps=1, show_progress=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError) as exc:
        sample(sd15_dir, ["a red circle"], out, steps=1, show_progress=False)
    message = str(exc.value)
    assert str(out) in message and "2 images" in message and "another --out" in message and "--overwrite" in message

    with pytest.raises(SystemExit) as code:
        main(["sample", "--model", str(sd15_dir), "--prompt", "a red circle", "--steps", "1", "--out", str(out)])
    assert code.value.code == 2 and "--overwrite" in capsys.readouterr().err

    main(["sample", "--model", str(sd15_dir), "--prompt", "a red circle", "--steps", "1", "--out", str(out),
          "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "p0000_i00.png", "run.json"]  # the old p0001 gone
    assert json.loads((out / "run.json").read_text())["prompts"] == ["a red circle"]


def test_an_empty_or_new_folder_is_fine(sd15_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    assert sample(sd15_dir, ["a"], tmp_path / "empty", steps=1, show_progress=False)[0].is_file()
    assert sample(sd15_dir, ["a"], tmp_path / "new" / "deeper", steps=1, show_progress=False)[0].is_file()
