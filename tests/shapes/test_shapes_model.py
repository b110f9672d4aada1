"""The shipped tiny SD1.5-architecture model loads offline with the stock pipeline and draws 64x64 images."""

import json
from pathlib import Path

import pytest
import torch

import agsm.shapes

MODEL = Path(agsm.shapes.__file__).parent / "models" / "sd15-tiny"


@pytest.mark.skipif(not (MODEL / "model_index.json").exists(),
                    reason=f"no shipped model at {MODEL} yet; train it with `python -m agsm.shapes.pretrain`")
def test_shipped_model_loads_offline_and_generates():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from agsm.shapes.generate import generate

    pipe = StableDiffusionPipeline.from_pretrained(MODEL, local_files_only=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    images = generate(pipe, ["a red circle"], [0], steps=4)
    assert images[0].size == (64, 64)
    again = generate(pipe, ["a red circle"], [0], steps=4)
    assert list(images[0].getdata()) == list(again[0].getdata())
    info = json.loads((MODEL / "train_info.json").read_text())
    assert {"command", "seed", "steps_vae", "steps_unet", "wall_seconds"} <= set(info)
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size < 12e6, f"the shipped model is {size / 1e6:.1f} MB"
