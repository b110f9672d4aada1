"""Text-guided image editing with the stock pipeline modules (soft tokens apply when installed beforehand).

    from agsm.sample import load_pipeline
    from agsm.editing import edit
    pipe = load_pipeline("src/agsm/shapes/models/sd15-tiny")
    # agsm.load_soft_tokens(pipe, "runs/demo/sd15/agsm")   # optional: tokens take part in every prediction
    edited = edit(pipe, image, "a red circle", "a blue circle", seed=0, steps=50)

The method defaults to the architecture's (FlowEdit for SD3, DDIM inversion for SD1.5 and SDXL); registry.py
lists every method with its options dataclass (`FlowEditOptions`, `DDIMInversionOptions`, ...), whose defaults
are its paper's. All share `steps`, `source_guidance` and `target_guidance`. UNet (SD1.5, SDXL) methods:
`ddim_inversion`, `pnp` (Plug-and-Play feature and self-attention injection), `masactrl` (mutual self-attention),
`direct_inversion` (source branch pinned to the inversion trajectory); e.g. `edit(..., method="pnp", tau_f=0.8)`.
SD3 (flow) methods: `flowedit`, `rf_inversion` (controlled inversion and sampling), `flowalign` (FlowEdit with a
trajectory regulariser); e.g. `edit(..., method="rf_inversion", eta=0.9)`.
"""
from __future__ import annotations

import dataclasses
import typing

import torch
from PIL import Image

from ..pipelines import pipeline_architecture
from .conditioning import encode_prompt
from .ddim_inversion import DDIMInversionOptions
from .flowedit import FlowEditOptions
from .latents import check_image, decode_latents, encode_image
from .registry import DEFAULT_EDITOR, EDITORS

METHODS = {name: editor.options for name, editor in EDITORS.items()}

__all__ = ["edit", "edit_options", "METHODS", "EDITORS", "FlowEditOptions", "DDIMInversionOptions"]


def edit_options(pipe, method: str | None = None, **options):
    """(method name, validated options dataclass) for this pipeline; unknown names list the valid ones."""
    arch = pipeline_architecture(pipe)
    method = method or DEFAULT_EDITOR[arch]
    if method not in EDITORS:
        raise ValueError(f"editing method {method!r} is not one of {sorted(EDITORS)}")
    if arch not in EDITORS[method].architectures:
        usable = sorted(name for name, e in EDITORS.items() if arch in e.architectures)
        raise ValueError(f"editing method {method!r} works on {EDITORS[method].architectures} pipelines, this one is "
                         f"{arch}; use one of {usable}")
    cls = METHODS[method]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{method} has no option(s) {unknown}; its options are {valid}")
    types = typing.get_type_hints(cls)
    return method, cls(**{name: _typed(method, name, value, types[name]) for name, value in options.items()})


def _typed(method: str, name: str, value, kind):
    """Command-line text ("0.5", "true") as the option's declared type; other values pass through."""
    if not isinstance(value, str) or kind is str:
        return value
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        return kind(value) if kind in (int, float) else value
    except ValueError:
        raise ValueError(f"{method} option {name}={value!r} is not of type {kind.__name__}") from None


def edit(pipe, image: Image.Image, source_prompt: str, target_prompt: str, *, seed: int = 0,
         method: str | None = None, progress: bool = True, **options) -> Image.Image:
    """The image edited from `source_prompt` towards `target_prompt`, same size as the input."""
    method, opts = edit_options(pipe, method, **options)
    image = check_image(pipe, image)
    size = (image.height, image.width)
    x0 = encode_image(pipe, image)
    source, target = encode_prompt(pipe, source_prompt, size), encode_prompt(pipe, target_prompt, size)
    generator = torch.Generator().manual_seed(seed)  # deterministic methods draw nothing from it
    latents = EDITORS[method].latents(pipe, x0, source, target, opts, generator, progress)
    return decode_latents(pipe, latents)
