"""`agsm eval shapes` killed with SIGKILL, then run again: only the missing batches are drawn, and results.json
and the grids are byte for byte those of an uninterrupted run."""
import json
import subprocess

import pytest
from reliability_helpers import agsm_command, kill_when

from agsm.eval.shapes import evaluate_shapes
from agsm.sample import load_pipeline


def _manifest_lines(out):
    path = out / "manifest.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.slow
def test_killed_eval_shapes_resumes_to_byte_identical_results(sd15_dir, tmp_path):
    options = ["--per-category", "2", "--steps", "8", "--batch-size", "2", "--seed", "3"]  # 12 images, 6 batches
    straight = tmp_path / "straight"
    evaluate_shapes(sd15_dir, straight, per_category=2, steps=8, batch_size=2, seed=3, pipe=load_pipeline(sd15_dir))

    out = tmp_path / "killed"
    command = agsm_command("eval", "shapes", "--model", sd15_dir, "--out", out, *options)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kill_when(proc, lambda: _manifest_lines(out) >= 2, "the first batch was recorded")
    assert not (out / "results.json").exists() and _manifest_lines(out) < 12
    first_image = (out / "images" / "00000.png").stat().st_mtime_ns

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert (out / "images" / "00000.png").stat().st_mtime_ns == first_image  # a finished batch is not redrawn
    for name in ["results.json", *(p.name for p in straight.glob("grid_*.png"))]:
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name
    assert len(json.loads((out / "results.json").read_text())["verdicts"]) == 12


def test_a_finished_evaluation_is_summarised_again_without_the_model(sd15_dir, tmp_path, monkeypatch):
    """Everything judged: results come from the manifest; changed settings start the folder afresh (overwrite)."""
    import agsm.eval.shapes as shapes

    pipe = load_pipeline(sd15_dir)
    first = evaluate_shapes(sd15_dir, tmp_path, per_category=1, steps=2, pipe=pipe)
    written = (tmp_path / "results.json").read_bytes()
    monkeypatch.setattr(shapes, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    assert evaluate_shapes(sd15_dir, tmp_path, per_category=1, steps=2) == first
    assert (tmp_path / "results.json").read_bytes() == written
    other = evaluate_shapes(sd15_dir, tmp_path, per_category=1, steps=2, seed=9, pipe=pipe, overwrite=True)
    assert [v["seed"] for v in other["verdicts"]] != [v["seed"] for v in first["verdicts"]]
    assert (tmp_path / "manifest.jsonl").read_text().count("\n") == 6  # the old run's entries are gone


def test_results_equal_the_suite_scorer_of_before(sd15_dir, tmp_path):
    """Batches, resume and manifest change nothing in the numbers: the same verdicts as shapes.score_suite."""
    from agsm.shapes.evaluate import score_suite
    from agsm.shapes.spec import CATEGORIES
    from agsm.shapes.suite import load_eval_suite

    pipe = load_pipeline(sd15_dir)
    suite = load_eval_suite(None)
    suite = [line for c in CATEGORIES for line in [x for x in suite if x["category"] == c][:1]]
    expected = score_suite(pipe, suite, images_per_prompt=2, seed=4, steps=2)
    got = evaluate_shapes(sd15_dir, tmp_path, per_category=1, images_per_prompt=2, seed=4, steps=2, pipe=pipe)
    assert {k: v for k, v in got.items() if k in expected} == expected
