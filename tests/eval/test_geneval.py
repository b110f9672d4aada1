"""`agsm eval geneval-export`: GenEval's folder layout, per-image seeds, resume after a kill."""
import argparse
import json

import pytest

from agsm.eval import geneval as geneval_mod
from agsm.eval.geneval import add_commands, export_geneval, geneval_keywords

META = [{"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"},
        {"tag": "counting", "include": [{"class": "square", "count": 2}], "prompt": "a photo of two squares"},
        {"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}], "prompt": "a photo of a red cat"}]


def _args(model, metadata, out, *extra):
    """export_geneval's keywords for these command-line options (through the CLI adapter)."""
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    return geneval_keywords(parser.parse_args(["geneval-export", "--model", str(model), "--metadata", str(metadata), "--out",
                              str(out), "--images-per-prompt", "3", "--steps", "2", "--batch-size", "2", *extra]))


@pytest.fixture
def metadata(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in META) + "\n")
    return path


@pytest.mark.slow
def test_layout_and_resume(sd15_dir, metadata, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert export_geneval(**_args(sd15_dir, metadata, whole)) == {"prompts": 3, "images": 9, "drawn": 9}
    for i, meta in enumerate(META):
        folder = whole / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == meta
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert sorted(p.name for p in whole.iterdir()) == ["00000", "00001", "00002", "config.json"]

    saved, real_save = [], geneval_mod.write_png

    def dying_save(path, image):
        if len(saved) == 4:  # killed after prompt 0 and one sample of prompt 1
            raise KeyboardInterrupt("simulated kill")
        saved.append(path)
        real_save(path, image)

    out = tmp_path / "resumed"
    monkeypatch.setattr(geneval_mod, "write_png", dying_save)
    with pytest.raises(KeyboardInterrupt):
        export_geneval(**_args(sd15_dir, metadata, out))
    monkeypatch.setattr(geneval_mod, "write_png", real_save)
    first = (out / "00000" / "samples" / "0000.png").stat().st_mtime_ns
    assert export_geneval(**_args(sd15_dir, metadata, out))["drawn"] == 5
    assert (out / "00000" / "samples" / "0000.png").stat().st_mtime_ns == first  # complete folder untouched
    for png in whole.glob("*/samples/*.png"):  # same seeds: the same pictures
        assert (out / png.relative_to(whole)).read_bytes() == png.read_bytes()
    assert export_geneval(**_args(sd15_dir, metadata, out))["drawn"] == 0
    assert not list(out.glob("*/samples/.*"))  # no temporary files left behind


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(sd15_dir, metadata, tmp_path):
    out = tmp_path / "run"
    export_geneval(**_args(sd15_dir, metadata, out, "--images-per-prompt", "1"))
    (out / "00002" / "samples" / "0000.png").unlink()
    with pytest.raises(ValueError, match=r"seed: 0 then, 5 now"):
        export_geneval(**_args(sd15_dir, metadata, out, "--images-per-prompt", "1", "--seed", "5"))


def test_bad_metadata_is_named(tmp_path):
    bad = tmp_path / "meta.jsonl"
    bad.write_text('{"tag": "x"}\n')
    with pytest.raises(ValueError, match="line 1 has no 'prompt'"):
        export_geneval(**_args("m", bad, tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="evaluation_metadata.jsonl"):
        export_geneval(**_args("m", tmp_path / "missing.jsonl", tmp_path / "o"))
