"""`agsm edit` end to end on tiny saved pipelines: PNG + edit.json, tokens change the edit, clean errors."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

from agsm.editing.cli import add_commands


def agsm(argv):
    parser = argparse.ArgumentParser(prog="agsm")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args, extra = parser.parse_known_args(argv)
    args.run(args, extra)


@pytest.fixture
def image_file(tmp_path):
    pixels = np.full((32, 32, 3), 255, np.uint8)
    pixels[6:18, 8:20] = (220, 30, 30)
    path = tmp_path / "source.png"
    Image.fromarray(pixels).save(path)
    return path


def _edit(model, image, out, *extra):
    agsm(["edit", "--model", str(model), "--image", str(image), "--source-prompt", "a red square",
          "--target-prompt", "a blue circle", "--out", str(out), "--steps", "8", *extra])
    return np.asarray(Image.open(out / "edited.png"), dtype=float), json.loads((out / "edit.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model, method", [("sd15_dir", "ddim_inversion"), ("sd3_dir", "flowedit")])
def test_edit_writes_png_and_settings_and_tokens_change_it(model, method, request, image_file, tmp_path,
                                                           make_token_file):
    from agsm.sample import load_pipeline

    path = request.getfixturevalue(model)
    base, record = _edit(path, image_file, tmp_path / "base", "--seed", "3")
    assert base.shape == (32, 32, 3)
    assert record["method"] == method and record["seed"] == 3 and record["tokens"] is None
    assert record["options"]["steps"] == 8 and record["source_prompt"] == "a red square"
    if method == "flowedit":
        assert record["options"] == {"steps": 8, "n_max": 5, "n_min": 0, "n_avg": 1, "source_guidance": 3.5,
                                     "target_guidance": 13.5, "tokens_on": "both"}
    tokens = make_token_file(tmp_path / "tokens", load_pipeline(path))
    with_tokens, record = _edit(path, image_file, tmp_path / "tokens_out", "--seed", "3", "--tokens", str(tokens))
    assert record["tokens"] == str(tokens) and record["uncond_tokens"] == "positive"
    assert np.abs(with_tokens - base).max() > 2


def test_user_errors_are_clear(sd15_dir, image_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="no image at"):
        _edit(sd15_dir, tmp_path / "missing.png", tmp_path / "out")
    with pytest.raises(ValueError, match="ddim_inversion has no option"):
        _edit(sd15_dir, image_file, tmp_path / "out", "--n-avg", "2")
    with pytest.raises(ValueError, match="not a multiple of 2"):
        _edit(sd15_dir, image_file, tmp_path / "out", "--size", "33")
    assert not (tmp_path / "out").exists()  # refused before anything was written
