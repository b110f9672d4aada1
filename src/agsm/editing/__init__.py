"""Text-guided image editing with the stock pipeline modules (soft tokens apply when installed beforehand).

    from agsm.sample import load_pipeline
    from agsm.editing import edit
    pipe = load_pipeline("src/agsm/shapes/models/sd15-tiny")
    # agsm.load_soft_tokens(pipe, "runs/demo/sd15/agsm")   # optional: tokens take part in every prediction
    edited = edit(pipe, image, "a red circle", "a blue circle", seed=0, steps=50)

The method follows the architecture: FlowEdit for SD3 (flow matching), DDIM inversion for SD1.5 and
SDXL. Options are the method's dataclass fields (`FlowEditOptions`, `DDIMInversionOptions`); both
share `steps`, `source_guidance` and `target_guidance`.
"""
from __future__ import annotations

import dataclasses

import torch
from PIL import Image

from ..pipelines import pipeline_architecture
from .conditioning import encode_prompt
from .ddim_inversion import DDIMInversionOptions, ddim_edit_latents
from .flowedit import FlowEditOptions, flowedit_latents
from .latents import check_image, decode_latents, encode_image

METHODS = {"flowedit": FlowEditOptions, "ddim_inversion": DDIMInversionOptions}
DEFAULT_METHOD = {"sd3": "flowedit", "sd15": "ddim_inversion", "sdxl": "ddim_inversion"}
_ARCHITECTURES = {"flowedit": ("sd3",), "ddim_inversion": ("sd15", "sdxl")}

__all__ = ["edit", "edit_options", "METHODS", "FlowEditOptions", "DDIMInversionOptions"]


def edit_options(pipe, method: str | None = None, **options):
    """(method name, validated options dataclass) for this pipeline; unknown names list the valid ones."""
    arch = pipeline_architecture(pipe)
    method = method or DEFAULT_METHOD[arch]
    if method not in METHODS:
        raise ValueError(f"editing method {method!r} is not one of {sorted(METHODS)}")
    if arch not in _ARCHITECTURES[method]:
        raise ValueError(f"editing method {method!r} works on {_ARCHITECTURES[method]} pipelines, this one is "
                         f"{arch}; use method={DEFAULT_METHOD[arch]!r}")
    cls = METHODS[method]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{method} has no option(s) {unknown}; its options are {valid}")
    return method, cls(**options)


def edit(pipe, image: Image.Image, source_prompt: str, target_prompt: str, *, seed: int = 0,
         method: str | None = None, progress: bool = True, **options) -> Image.Image:
    """The image edited from `source_prompt` towards `target_prompt`, same size as the input."""
    method, opts = edit_options(pipe, method, **options)
    image = check_image(pipe, image)
    size = (image.height, image.width)
    x0 = encode_image(pipe, image)
    source, target = encode_prompt(pipe, source_prompt, size), encode_prompt(pipe, target_prompt, size)
    if method == "flowedit":
        generator = torch.Generator().manual_seed(seed)
        latents = flowedit_latents(pipe, x0, source, target, opts, generator, progress)
    else:  # deterministic: the seed has nothing to draw
        latents = ddim_edit_latents(pipe, x0, source, target, opts, progress)
    return decode_latents(pipe, latents)
