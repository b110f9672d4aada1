"""Sampling images from a ShapesWorld pipeline, one seed per image, so any image can be redrawn alone.

The defaults are the settings the shipped models' suite scores use, each chosen once before scoring, 64x64:
sd15-tiny: DDIM, 25 steps, classifier-free guidance 6.0;
sd3-tiny: its flow-matching Euler scheduler, 25 steps, guidance SD3_GUIDANCE (picked on a few prompts, see README).
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..backbones.t5_free import fast_sampling

DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 6.0
SD3_GUIDANCE = 5.0
SAMPLER_DEFAULTS = {"sd15": {"steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE},
                    "sd3": {"steps": 25, "guidance": SD3_GUIDANCE}}


def sampler_defaults(pipe) -> dict:
    """The ShapesWorld sampler settings for the pipeline's architecture (an MM-DiT means SD3)."""
    return SAMPLER_DEFAULTS["sd3" if getattr(pipe, "transformer", None) is not None else "sd15"]


def resolve_sampler(pipe, steps: int | None, guidance: float | None) -> tuple[int, float]:
    """steps and guidance as given, the architecture's defaults where None."""
    defaults = sampler_defaults(pipe)
    return steps or defaults["steps"], defaults["guidance"] if guidance is None else guidance


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

    steps and guidance default to `sampler_defaults(pipe)`.
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
