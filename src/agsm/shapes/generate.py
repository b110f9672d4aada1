"""Sampling images from a ShapesWorld pipeline, one seed per image, so any image can be redrawn alone.

The defaults are the settings the shipped model's suite scores use, chosen once before scoring:
DDIM, 25 steps, classifier-free guidance 6.0, 64x64.
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 6.0


@torch.no_grad()
def generate(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    batch_size: int = 50,
    **pipe_kwargs,
) -> list[Image.Image]:
    """One image per (prompt, seed) with the pipeline's own sampler; extra kwargs go to the pipeline call."""
    if len(prompts) != len(seeds):
        raise ValueError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pipe.set_progress_bar_config(disable=True)
    images: list[Image.Image] = []
    for i in range(0, len(prompts), batch_size):
        batch_prompts = list(prompts[i : i + batch_size])
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch_size]]
        out = pipe(batch_prompts, num_inference_steps=steps, guidance_scale=guidance, generator=generators, **pipe_kwargs)
        images.extend(out.images)
    return images
