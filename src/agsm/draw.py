"""The one generation loop: a stock diffusers pipeline, one seed per image, in batches (agsm sample, every
evaluation that draws images, the ShapesWorld tools and the demo).

Each image's initial noise comes from its own CPU generator seeded with that image's seed, so batching does not
change which image a seed gives and any image can be redrawn alone; the seeds themselves (seed + i, seed + p*N + j,
the suite's own ...) are each caller's and are passed in. A T5-free SD3 pipeline is called with one zero token
instead of 256 (agsm.backbones.t5_free.fast_sampling: the same images, faster); other pipelines get nothing extra.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext

import torch

from .backbones.t5_free import fast_sampling


@torch.no_grad()
def draw_batches(pipe, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float,
                 batch_size: int, size: int | None = None, negative_prompt: str | None = None,
                 t5_free_fast: bool = True, **pipe_kwargs) -> Iterator[tuple[range, list]]:
    """Yields (indices into prompts, their images) per pipeline call of up to `batch_size` images, so a caller
    can save (and record) each batch before the next is drawn. `size`: height = width in pixels (None: the
    pipeline's default); `negative_prompt`: one text for every image; extra kwargs go to the pipeline call.
    `t5_free_fast` False: call a T5-free SD3 with its 256 zero tokens, as COCO and GenEval images always were
    drawn (equal in exact arithmetic, not necessarily in the last bit)."""
    if len(prompts) != len(seeds):
        raise ValueError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} must be >= 1")
    pipe.set_progress_bar_config(disable=True)  # one bar per job, the caller's, not one per pipeline call
    with fast_sampling(pipe) if t5_free_fast else nullcontext({}) as fast:
        for start in range(0, len(prompts), batch_size):
            batch = range(start, min(start + batch_size, len(prompts)))
            extra = dict(pipe_kwargs)
            if size is not None:
                extra.update(height=size, width=size)
            if negative_prompt is not None:  # a list, as the prompts are
                extra["negative_prompt"] = [negative_prompt] * len(batch)
            generators = [torch.Generator(device="cpu").manual_seed(int(seeds[i])) for i in batch]
            images = pipe([prompts[i] for i in batch], num_inference_steps=steps, guidance_scale=guidance,
                          generator=generators, **{**fast, **extra}).images
            yield batch, images


def draw_images(pipe, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float,
                batch_size: int = 50, size: int | None = None, negative_prompt: str | None = None,
                t5_free_fast: bool = True, **pipe_kwargs) -> list:
    """Every image of draw_batches, in order."""
    return [image for _, images in draw_batches(pipe, prompts, seeds, steps=steps, guidance=guidance,
                                                batch_size=batch_size, size=size, negative_prompt=negative_prompt,
                                                t5_free_fast=t5_free_fast, **pipe_kwargs) for image in images]
