"""`agsm ceiling` and agsm.study.ceiling end to end on the shipped tiny models (a handful of prompts, few steps): the
report's table, flips and cost agree with the evaluations it ran; a finished setting is returned without the model;
the guidance is part of an evaluation's identity; UNet and MM-DiT pipelines both run."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import agsm.shapes
import agsm.study.ceiling as ceiling_module
from agsm.cli import main
from agsm.eval.shapes import evaluate_shapes
from agsm.guidance import AlignmentGuidance
from agsm.study.ceiling import run_ceiling

SHIPPED = Path(agsm.shapes.__file__).parent / "models"


def _images(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((folder / "images").rglob("*.png"))]


def test_ceiling_command_reports_table_flips_quality_and_cost(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ceiling"
    main(["ceiling", "--model", str(SHIPPED / "sd15-tiny"), "--prompts", "test", "--negatives", "hard",
          "--gamma", "3", "--temperature", "0.1", "--where", "conditional", "--per-category", "1", "--steps", "3",
          "--timing-images", "2", "--device", "cpu", "--dtype", "float32", "--out", str(out)])
    printed = capsys.readouterr().out
    [report_path] = out.glob("*.json")
    report = json.loads(report_path.read_text())
    assert "McNemar p" in printed and report_path.with_suffix(".md").is_file()
    base = json.loads((Path(report["folders"]["base"]) / "results.json").read_text())
    guided = json.loads((Path(report["folders"]["ceiling"]) / "results.json").read_text())
    assert [row["category"] for row in report["table"]][-1] == "mean" and len(report["table"]) == 7
    assert report["table"][-1]["base"] == base["mean"] and report["table"][-1]["ceiling"] == guided["mean"]
    flips = [(b["correct"], g["correct"]) for b, g in zip(base["verdicts"], guided["verdicts"])]
    assert report["paired"]["flips_up"] == flips.count((False, True))
    assert report["paired"]["flips_down"] == flips.count((True, False))
    assert len(report["flipped"]) == report["paired"]["flips_up"] + report["paired"]["flips_down"]
    assert report["paired"]["diff"] == pytest.approx(guided["mean"] - base["mean"])
    assert set(report["quality"]) == {"base", "ceiling"} and "clean_rate" in report["quality"]["ceiling"]
    assert report["cost"]["images"] == 2 and report["cost"]["ceiling_s_per_image"] > 0
    # the same images seeds, another sampling: the guidance changed the images
    assert any((a != b).any() for a, b in zip(_images(Path(report["folders"]["base"])),
                                              _images(Path(report["folders"]["ceiling"]))))

    # finished: the same setting again is read back, without loading the model or drawing
    def refuse(*args, **kwargs):
        raise AssertionError("a finished setting loaded the model")

    monkeypatch.setattr(ceiling_module, "load_pipeline", refuse)
    monkeypatch.setattr(ceiling_module, "evaluate_shapes", refuse)
    again = run_ceiling(SHIPPED / "sd15-tiny", out, prompts="test", negatives="hard", gamma=3, per_category=1,
                        steps=3, timing_images=2, dtype="float32")
    assert again == report


def test_the_guidance_is_part_of_an_evaluations_identity(tmp_path):
    model, out = SHIPPED / "sd15-tiny", tmp_path / "eval"
    table = {"a square": ["a circle"]}
    prompts = tmp_path / "suite.jsonl"
    prompts.write_text(json.dumps({"prompt": "a square", "category": "single_object", "seed": 0,
                                   "requirements": {"category": "single_object",
                                                    "objects": [{"shape": "square", "color": None}],
                                                    "count": None, "relation": None}}) + "\n")
    evaluate_shapes(model, out, prompts=prompts, steps=2, sampling_hook=AlignmentGuidance(table, gamma=1.0),
                    show_progress=False)
    assert json.loads((out / "config.json").read_text())["sampling_hook"]["gamma"] == 1.0
    with pytest.raises(ValueError, match="sampling_hook"):
        evaluate_shapes(model, out, prompts=prompts, steps=2, sampling_hook=AlignmentGuidance(table, gamma=2.0),
                        show_progress=False)


@pytest.mark.parametrize("model", ["sd3-tiny", "sdxl-tiny"])
def test_ceiling_runs_on_mmdit_and_sdxl_pipelines(tmp_path, model):
    report = run_ceiling(SHIPPED / model, tmp_path, prompts="dev", negatives="inbatch", gamma=2.0,
                         where="after-guidance", per_category=1, steps=2, timing_images=0, show_progress=False)
    assert report["setting"]["where"] == "after-guidance" and report["cost"] is None
    assert report["paired"]["n"] == 6 and (tmp_path / "dev_suite.jsonl").is_file()
    config = json.loads((Path(report["folders"]["ceiling"]) / "config.json").read_text())
    assert config["sampling_hook"]["negatives"].startswith("inbatch")
    assert any((a != b).any() for a, b in zip(_images(Path(report["folders"]["base"])),
                                              _images(Path(report["folders"]["ceiling"]))))
