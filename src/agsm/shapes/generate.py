"""Sampling images from a ShapesWorld pipeline, one seed per image, so any image can be redrawn alone.

Steps and guidance left out come from agsm.backbones.sampler_defaults: the model's recommended sampler (sampler.json in its
folder), else its architecture's. The ShapesWorld recipes' recommendations, SHAPESWORLD_SAMPLERS, were each chosen
once before scoring, 64x64, and ship in the models' folders (`agsm shapes pretrain` writes them):
sd15-tiny: DDIM, 25 steps, classifier-free guidance 6.0;
sd3-tiny: its flow-matching Euler scheduler, 25 steps, guidance 5.0 (picked on a few prompts, see README);
sdxl-tiny: sd15-tiny's, set before it was trained (the same UNet recipe, DDIM and noise schedule).
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..backbones.t5_free import fast_sampling
from ..backbones.sampler_defaults import resolve_sampler

SHAPESWORLD_SAMPLERS = {"sd15": {"steps": 25, "guidance": 6.0}, "sdxl": {"steps": 25, "guidance": 6.0},
                        "sd3": {"steps": 25, "guidance": 5.0}}
SHAPESWORLD_SAMPLER_WHY = ("the ShapesWorld recipe's sampler, chosen once before the suite was scored "
                           "(agsm.shapes.generate.SHAPESWORLD_SAMPLERS)")

__all__ = ["SHAPESWORLD_SAMPLERS", "generate", "resolve_sampler"]


@torch.no_grad()
def generate(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int | None = None,
    guidance: float | None = None,
    batch_size: int = 50,
    **pipe_kwargs,
) -> list[Image.Image]:
    """One image per (prompt, seed) with the pipeline's own sampler; extra kwargs go to the pipeline call.

    steps and guidance default to the model's recommended sampler, else its architecture's (resolve_sampler).
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps, guidance = resolve_sampler(pipe, steps, guidance)
    pipe.set_progress_bar_config(disable=True)
    images: list[Image.Image] = []
    with fast_sampling(pipe) as fast:  # T5-free SD3: the same images with one zero token instead of 256
        for i in range(0, len(prompts), batch_size):
            batch_prompts = list(prompts[i : i + batch_size])
            generators = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch_size]]
            out = pipe(batch_prompts, num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                       **{**fast, **pipe_kwargs})
            images.extend(out.images)
    return images
