"""MasaCtrl (Cao et al. 2023, "MasaCtrl: Tuning-Free Mutual Self-Attention Control for Consistent Image Synthesis
and Editing"), for UNet pipelines (SD1.5, SDXL).

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle", method="masactrl", start_step=4, start_layer=10)

The source is inverted with DDIM (trajectory.py); from the inverted noise x_T a source branch (source prompt) and a
target branch (target prompt) are denoised together in one batch. Mutual self-attention (paper Sec. 3.2, Eq. 4-5):
from denoising step S on, in self-attention layers L onwards, the target's queries attend to the source's keys and
values, Attention(Q_tgt, K_src, V_src), so the target draws its content from the source while its layout follows
its own prompt. Each guidance branch takes keys and values from the source's same branch (the official code splits
the batch into unconditional and conditional halves). The source's own attention is unchanged.
Defaults (paper Sec. 4 and the official code): S = 4 of 50 steps (0-based: steps 4..49 are controlled), L = 10 of the
16 SD1.5 self-attention layers counted down, mid, up (so the six highest-resolution decoder layers), CFG 7.5. On
other UNets L scales with the layer count, round(10 * n / 16) (injection.py; the official SDXL setting 44 of 70 is
this rule); the tiny ShapesWorld UNet has 7 self-attention layers, so layers 4-6 (three of its four decoder layers).
`direct_inversion=True` pins the source branch to the inversion trajectory after every step (Ju et al. 2023,
"directinversion+masactrl" in PnP Inversion), instead of letting it drift from x_T.
Deviations: the source branch uses the source prompt, at `source_guidance` (1 by default, the inversion's), where
the official real-image example uses an empty prompt; with the source prompt a zero edit reproduces the input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pipelines import denoiser_of
from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions
from .injection import (SD15_SELF_ATTENTION_LAYERS, RowCopy, branch_rows, check_unfused, hooked, scale_layer,
                        self_attention_layers)
from .trajectory import check_options, invert_trajectory


@dataclass(frozen=True)
class MasaCtrlOptions:
    """The paper's defaults: 50 steps, CFG 7.5, mutual self-attention from step 4 and layer 10 (of SD1.5's 16)."""

    steps: int = 50
    source_guidance: float = 1.0   # inversion and the source branch
    target_guidance: float = 7.5
    start_step: int = 4            # first controlled step (0-based); >= steps turns the control off
    start_layer: int = 10          # first controlled self-attention layer, on SD1.5's 16
    direct_inversion: bool = False  # keep the source branch on the inversion trajectory (Ju et al. 2023)

    def __post_init__(self) -> None:
        check_options("MasaCtrl", self)
        if not isinstance(self.start_step, int) or self.start_step < 0:
            raise ValueError(f"MasaCtrl start_step={self.start_step!r} must be an integer >= 0 (4 is the paper's; "
                             "a value >= steps turns the control off)")
        if not isinstance(self.start_layer, int) or not 0 <= self.start_layer <= SD15_SELF_ATTENTION_LAYERS:
            raise ValueError(f"MasaCtrl start_layer={self.start_layer!r} must be an integer in [0, "
                             f"{SD15_SELF_ATTENTION_LAYERS}] (SD1.5's self-attention layers; 10 is the paper's)")


def controlled_projections(unet, start_layer: int) -> list:
    """The key and value projections of the self-attention layers from `start_layer` (SD1.5 count) on."""
    layers = self_attention_layers(unet)
    chosen = [attn for _, attn in layers[scale_layer(start_layer, SD15_SELF_ATTENTION_LAYERS, len(layers)):]]
    check_unfused(chosen)
    return [proj for attn in chosen for proj in (attn.to_k, attn.to_v)]


@torch.no_grad()
def masactrl_latents(pipe, x0_src: torch.Tensor, source: PromptCond, target: PromptCond,
                     options: MasaCtrlOptions = MasaCtrlOptions(), generator: torch.Generator | None = None,
                     progress: bool = True) -> torch.Tensor:
    """The edited latent; deterministic (`generator` is unused)."""
    trajectory, scheduler = invert_trajectory(pipe, x0_src, source, options.steps, options.source_guidance, progress)
    mutual = RowCopy()
    source_rows, target_rows, batch = branch_rows(options.source_guidance != 1.0 or options.target_guidance != 1.0)
    pairs = list(zip(target_rows, source_rows))  # branch-matched: uncond <- uncond, cond <- cond
    x_source = x_target = trajectory[-1]
    hooks = [(m, mutual) for m in controlled_projections(denoiser_of(pipe), options.start_layer)]
    with hooked(hooks):
        for i, t in enumerate(progress_bar(scheduler.timesteps, desc="MasaCtrl", disable=not progress, leave=False)):
            mutual.set(i >= options.start_step, pairs, batch)
            pred_source, pred_target = guided_predictions(
                pipe, t, [(scheduler.scale_model_input(x_source, t), source, options.source_guidance),
                          (scheduler.scale_model_input(x_target, t), target, options.target_guidance)])
            x_source = scheduler.step(pred_source, t, x_source).prev_sample
            x_target = scheduler.step(pred_target, t, x_target).prev_sample
            if options.direct_inversion:  # x_src += z*_{t-1} - x_src: exactly the inversion's latent
                x_source = trajectory[options.steps - i - 1]
    return x_target
