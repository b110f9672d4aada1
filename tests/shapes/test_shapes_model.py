"""The shipped tiny SD1.5-architecture model loads offline with the stock pipeline and draws 64x64 images."""

import json
from pathlib import Path

import numpy as np
import pytest

import agsm.shapes

MODEL = Path(agsm.shapes.__file__).parent / "models" / "sd15-tiny"


needs_model = pytest.mark.skipif(
    not (MODEL / "model_index.json").exists(),
    reason=f"no shipped model at {MODEL} yet; train it with `python -m agsm.shapes.pretrain`")


@needs_model
def test_shipped_model_loads_offline_and_generates():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from agsm.shapes.generate import generate

    pipe = StableDiffusionPipeline.from_pretrained(MODEL, local_files_only=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    images = generate(pipe, ["a red circle"], [0], steps=4)
    assert images[0].size == (64, 64)
    again = generate(pipe, ["a red circle"], [0], steps=4)
    assert (np.asarray(images[0]) == np.asarray(again[0])).all()
    info = json.loads((MODEL / "train_info.json").read_text())
    assert {"command", "seed", "steps_vae", "steps_unet", "wall_seconds"} <= set(info)
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size < 12e6, f"the shipped model is {size / 1e6:.1f} MB"


@needs_model
def test_shipped_suite_scores_are_reproduced():
    """A spread of the recorded verdicts is redrawn with its seed and judged the same way."""
    from diffusers import StableDiffusionPipeline

    from agsm.shapes.generate import generate
    from agsm.shapes.verify import verify

    scores = json.loads((MODEL / "suite_scores.json").read_text())
    records = scores["verdicts"]
    for category, acc in scores["accuracy"].items():
        hits = [r["correct"] for r in records if r["category"] == category]
        assert acc == pytest.approx(sum(hits) / len(hits))
    sample = records[:: len(records) // 24][:24]
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, local_files_only=True)
    sampler = scores["sampler"]
    images = generate(pipe, [r["prompt"] for r in sample], [r["seed"] for r in sample],
                      steps=sampler["steps"], guidance=sampler["guidance"])
    assert [verify(im, r["prompt"]).correct for im, r in zip(images, sample)] == [r["correct"] for r in sample]
