"""The one resumable-run policy (agsm.eval.resumable) and the one atomic image writer: every runner that resumes
refuses a folder holding other settings in the same words (each change, then and now, and the fix), starts it
afresh only when asked (overwrite), and understands the record files of before (run.json, export.json)."""
import json

import numpy as np
import pytest
from PIL import Image

from agsm.eval.resumable import RECORD, Manifest, ResumableRun, RunRecord, SettingsChanged
from agsm.utils.atomic_files import write_png

SETTINGS = {"model": "/m", "seed": 0, "dtype": "float32"}


def _image(value=10):
    return Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8))


def test_other_settings_are_refused_naming_each_change_and_the_fix(tmp_path):
    run = ResumableRun(tmp_path, SETTINGS)
    run.resolve({"sampler": {"steps": 2}})
    with pytest.raises(SettingsChanged, match=r"seed: 0 then, 5 now.*another --out"):
        ResumableRun(tmp_path, {**SETTINGS, "seed": 5})
    with pytest.raises(ValueError, match=r"sampler: \{'steps': 2\} then, \{'steps': 3\} now"):
        ResumableRun(tmp_path, SETTINGS).resolve({"sampler": {"steps": 3}})
    assert json.loads((tmp_path / RECORD).read_text()) == {**SETTINGS, "sampler": {"steps": 2}}  # untouched


def test_overwrite_starts_the_folder_afresh(tmp_path, caplog):
    run = ResumableRun(tmp_path, SETTINGS)
    write_png(tmp_path / run.image_path(0), _image())
    run.record([{"index": 0, "file": run.image_path(0)}])
    again = ResumableRun(tmp_path, {**SETTINGS, "seed": 5}, overwrite=True)
    assert again.entries == {} and not (tmp_path / "manifest.jsonl").exists()
    assert not list((tmp_path / "images").iterdir())
    assert "seed: 0 then, 5 now" in caplog.text and "starting it afresh" in caplog.text
    assert json.loads((tmp_path / RECORD).read_text())["seed"] == 5


def test_same_settings_resume_and_a_torn_manifest_line_is_redone(tmp_path):
    run = ResumableRun(tmp_path, SETTINGS)
    for i in range(2):
        write_png(tmp_path / run.image_path(i), _image(i))
    run.record([{"index": 0, "file": run.image_path(0)}, {"index": 1, "file": run.image_path(1)}])
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(manifest.read_text()[:-5])  # killed while appending the second entry
    assert set(ResumableRun(tmp_path, SETTINGS).entries) == {0}
    assert manifest.read_text().count("\n") == 1


def test_record_files_of_before_are_understood(tmp_path):
    shapes = tmp_path / "shapes"  # eval shapes / edit-shapes: run.json as {"settings", "sampler"}
    shapes.mkdir()
    (shapes / "run.json").write_text(json.dumps({"settings": SETTINGS, "sampler": {"steps": 25}}))
    assert ResumableRun(shapes, SETTINGS).sampler == {"steps": 25}
    with pytest.raises(SettingsChanged, match="seed: 0 then, 1 now"):
        ResumableRun(shapes, {**SETTINGS, "seed": 1})

    geneval = tmp_path / "geneval"  # geneval-export: export.json, flat
    geneval.mkdir()
    (geneval / "export.json").write_text(json.dumps({**SETTINGS, "sampler": {"steps": 2}}))
    record = RunRecord(geneval, SETTINGS)
    assert record.resolved == {"sampler": {"steps": 2}}
    record.resolve({"sampler": {"steps": 2}})  # the next write goes to the one name
    assert (geneval / RECORD).is_file() and not (geneval / "export.json").exists()
    with pytest.raises(SettingsChanged, match="model: '/m' then, '/n' now"):
        RunRecord(geneval, {**SETTINGS, "model": "/n"})


def test_a_finished_run_refuses_other_given_values(tmp_path):
    run = ResumableRun(tmp_path, SETTINGS)
    run.resolve({"sampler": {"steps": 2, "guidance": 7.0}})
    run.check_given({"steps": None, "guidance": 7.0}, held=run.sampler)
    with pytest.raises(SettingsChanged, match=r"guidance 2.0 differs from the finished run .*\(7.0\)"):
        run.check_given({"guidance": 2.0}, held=run.sampler)


def test_write_png_is_atomic_and_equals_pil_save(tmp_path):
    image = _image(77)
    image.save(tmp_path / "direct.png", format="PNG")
    write_png(tmp_path / "atomic.png", image)
    assert (tmp_path / "atomic.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.png", "direct.png"]  # no temporary file left


def test_manifest_keeps_entries_by_key(tmp_path):
    manifest = Manifest(tmp_path / "m.jsonl")
    manifest.extend([{"index": 3, "file": "a.png"}])
    assert Manifest(tmp_path / "m.jsonl").entries == {3: {"index": 3, "file": "a.png"}}


def test_eval_shapes_refuses_like_the_other_runners_and_reads_its_old_run_json(sd15_dir, tmp_path):
    from agsm.eval.shapes import evaluate_shapes
    from agsm.sample import load_pipeline

    pipe = load_pipeline(sd15_dir)
    first = evaluate_shapes(sd15_dir, tmp_path, per_category=1, steps=1, pipe=pipe, show_progress=False)
    with pytest.raises(SettingsChanged, match=r"seed: 0 then, 9 now.*another --out"):
        evaluate_shapes(sd15_dir, tmp_path, per_category=1, steps=1, seed=9, pipe=pipe, show_progress=False)
    record = json.loads((tmp_path / RECORD).read_text())  # a folder of before: the same record as run.json
    sampler = record.pop("sampler")
    (tmp_path / RECORD).unlink()
    (tmp_path / "run.json").write_text(json.dumps({"settings": record, "sampler": sampler}))
    assert evaluate_shapes(sd15_dir, tmp_path, per_category=1, steps=1, show_progress=False) == first


def test_the_eval_commands_take_overwrite(sd15_dir, tmp_path, capsys):
    """On the command line: other settings end with the refusal and the fix (exit 2), --overwrite starts afresh."""
    from agsm.cli import main

    command = ["eval", "shapes", "--model", str(sd15_dir), "--out", str(tmp_path), "--per-category", "1",
               "--steps", "1", "--batch-size", "6"]
    main(command)
    with pytest.raises(SystemExit) as refused:
        main(command + ["--seed", "9"])
    assert refused.value.code == 2 and "seed: 0 then, 9 now" in capsys.readouterr().err
    main(command + ["--seed", "9", "--overwrite"])
    assert json.loads((tmp_path / RECORD).read_text())["seed"] == 9
    for name in ("coco", "geneval-export", "pie-bench", "edit-shapes"):  # every command that resumes
        with pytest.raises(SystemExit):
            main(["eval", name, "--help"])
        assert "--overwrite" in capsys.readouterr().out
