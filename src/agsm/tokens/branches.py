"""Which classifier-free-guidance branch each sample of a denoiser call belongs to, for the token options that
treat the branches differently (`load_soft_tokens(..., uncond_tokens='negative' | 'none')`).

Stock pipelines batch [unconditional, conditional] halves when `pipe.do_classifier_free_guidance` is on, a flag
each pipeline sets for itself in its __call__. A denoiser module can be shared by several pipelines (from_pipe,
`components=`), and the module's hooks are not told which of them is calling, so the flag is read from the
pipeline that is drawing now: the innermost caller frame whose `self` (a pipeline's __call__) or `pipe` (agsm's
editing loops, which call the denoiser themselves) is a pipeline holding this denoiser. Reading the flag of the
pipeline that loaded the tokens instead would apply its last call's guidance to another pipeline's batch.
"""
from __future__ import annotations

import sys

import torch

_CALLER_NAMES = ("self", "pipe")
_MAX_DEPTH = 64  # the denoiser's pre-hook sits a dozen frames under the pipeline's __call__


def _holds(pipe, model) -> bool:
    return getattr(pipe, "unet", None) is model or getattr(pipe, "transformer", None) is model


def drawing_pipeline(model):
    """The pipeline whose call is running `model` now, or None when no caller frame holds one."""
    from diffusers import DiffusionPipeline

    frame = sys._getframe(1)
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return None
        for name in _CALLER_NAMES:
            candidate = frame.f_locals.get(name)
            if isinstance(candidate, DiffusionPipeline) and _holds(candidate, model):
                return candidate
        frame = frame.f_back
    return None


def by_branch(model, fallback, batch: int, uncond_value, cond_value, dtype) -> torch.Tensor | None:
    """[uncond_value] * half + [cond_value] * half when the drawing pipeline (else `fallback`, the pipeline agsm
    was last called with) guides; None (no split) otherwise."""
    pipe = drawing_pipeline(model)
    if pipe is None:
        pipe = fallback
    if not getattr(pipe, "do_classifier_free_guidance", False):
        return None
    half = batch // 2
    return torch.tensor([uncond_value] * half + [cond_value] * (batch - half), dtype=dtype)
