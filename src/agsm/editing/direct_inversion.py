"""Direct inversion (Ju et al. 2023, "PnP Inversion: Boosting Diffusion-based Editing with 3 Lines of Code"), for
UNet pipelines (SD1.5, SDXL), with plain prompt-to-target sampling as the editor.

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle", method="direct_inversion")

DDIM inversion (trajectory.py) gives z*_0 = x0, ..., z*_T. Editing runs a source branch (source prompt) and a target
branch (target prompt) from z*_T, both under classifier-free guidance w (the paper's Algorithm 1 and the official
offset computation use the editing CFG, 7.5, for both). At step t, with DDIM(z, c) the guided DDIM step:
    d_t      = z*_{t-1} - DDIM(z*_t, source)        (the source branch's error against the inversion)
    z^src    = DDIM(z^src_t, source) + d_t = z*_{t-1} (the paper's "3 lines": the source stays on the trajectory)
    z^tgt    = DDIM(z^tgt_t, target) + d_t            (target_offset=True)
The paper adds d_t to the source branch only and relies on the editor coupled to it (P2P, PnP, MasaCtrl attention
sharing) to carry the source into the target; with plain sampling nothing couples them, so the target would be
exactly DDIM inversion's (`target_offset=False` reproduces ddim_inversion). By default the target therefore also
gets d_t: the source's guidance-induced drift is removed from the target, so where the prompts agree the target stays
on the source's trajectory (a zero edit returns the input latent up to float error, at any guidance). This is the
official code's "add_target" step with the source branch's offset (its own variant adds the target prompt's offset
at the inversion latent, which alone makes the target equal the source). For the paper's own combinations use
`pnp` (whose source branch is the inversion trajectory: "directinversion+pnp") or
`masactrl --option direct_inversion=true`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions
from .trajectory import check_options, invert_trajectory


@dataclass(frozen=True)
class DirectInversionOptions:
    """The paper's defaults: 50 DDIM steps, inversion without guidance, CFG 7.5 for both branches while editing."""

    steps: int = 50
    source_guidance: float = 1.0   # during inversion
    target_guidance: float = 7.5   # during editing, for both branches
    target_offset: bool = True     # add the source's per-step correction to the target (see the module docstring)

    def __post_init__(self) -> None:
        check_options("direct inversion", self)


@torch.no_grad()
def direct_inversion_latents(pipe, x0_src: torch.Tensor, source: PromptCond, target: PromptCond,
                             options: DirectInversionOptions = DirectInversionOptions(),
                             generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
    """The edited latent; deterministic (`generator` is unused)."""
    trajectory, scheduler = invert_trajectory(pipe, x0_src, source, options.steps, options.source_guidance, progress)
    w = options.target_guidance
    latents = trajectory[-1]
    for i, t in enumerate(progress_bar(scheduler.timesteps, desc="direct inversion", disable=not progress, leave=False)):
        x_source = trajectory[options.steps - i]  # z*_t: the source branch is always on the trajectory
        pred_source, pred_target = guided_predictions(pipe, t, [(scheduler.scale_model_input(x_source, t), source, w),
                                                                (scheduler.scale_model_input(latents, t), target, w)])
        offset = trajectory[options.steps - i - 1] - scheduler.step(pred_source, t, x_source).prev_sample
        latents = scheduler.step(pred_target, t, latents).prev_sample
        if options.target_offset:
            latents = latents + offset
    return latents
