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

from PIL import Image

from ..backbones.sampler_defaults import resolve_sampler
from ..draw import draw_images

SHAPESWORLD_SAMPLERS = {"sd15": {"steps": 25, "guidance": 6.0}, "sdxl": {"steps": 25, "guidance": 6.0},
                        "sd3": {"steps": 25, "guidance": 5.0}}
SHAPESWORLD_SAMPLER_WHY = ("the ShapesWorld recipe's sampler, chosen once before the suite was scored "
                           "(agsm.shapes.generate.SHAPESWORLD_SAMPLERS)")

__all__ = ["SHAPESWORLD_SAMPLERS", "generate", "resolve_sampler"]


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

    steps and guidance default to the model's recommended sampler, else its architecture's (resolve_sampler);
    the drawing itself is agsm.draw's, the one generation loop.
    """
    steps, guidance = resolve_sampler(pipe, steps, guidance)
    return draw_images(pipe, prompts, seeds, steps=steps, guidance=guidance, batch_size=batch_size, **pipe_kwargs)
