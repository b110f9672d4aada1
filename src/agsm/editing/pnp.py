"""Plug-and-Play (Tumanyan et al. 2023, "Plug-and-Play Diffusion Features for Text-Driven Image-to-Image
Translation"), for UNet pipelines (SD1.5, SDXL).

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle", method="pnp", tau_f=0.8, tau_a=0.5)

The source image is inverted with DDIM (trajectory.py); the target is sampled from the inverted noise x_T under the
target prompt while, at every step, the source branch is run on the inversion latent of that step (as the official
pnp-diffusers code does: it loads the saved inverted latents) and its features replace the target's:
- spatial features (paper Sec. 4, "f_t^4"): the output of the residual branch (conv2, before the skip sum) of decoder
  residual block 4 (0-based, SD1.5's up_blocks[1].resnets[1]) for the first tau_f = 0.8 of the steps;
- self-attention (Sec. 4, Eq. 3, "q_t^l, k_t^l"): queries and keys of the decoder's self-attention layers from the
  second one on (SD1.5: decoder layers 4-11 of the paper's count) for the first tau_A = 0.5 of the steps; the values
  stay the target's, so the target keeps its own appearance under the source's layout.
"First tau of the steps" is the official int(steps * tau) steps (40 and 25 of 50). Both target guidance branches
take the source's conditional-branch features, as in the official code (one source pass per step).
Layers on other UNets: decoder resnet round(4 * n / 12), self-attention from round(1 * n / 9) (injection.py); on the
tiny ShapesWorld UNet (4 decoder resnets, 4 decoder self-attention layers) that is resnet 1 (up_blocks[0].resnets[1])
and all four self-attention layers.
Deviation: the source is inverted and run with the source prompt (the official code inverts with an empty prompt;
the source prompt is what PIE-Bench's PnP runs use and makes a zero edit reproduce the input).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pipelines import denoiser_of
from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions
from .injection import (SD15_DECODER_RESNETS, SD15_DECODER_SELF_ATTENTION, RowCopy, branch_rows, check_unfused,
                        decoder_resnets, hooked, scale_layer, self_attention_layers)
from .trajectory import check_options, invert_trajectory


@dataclass(frozen=True)
class PnPOptions:
    """The paper's and the official code's defaults (config_pnp.yaml): 50 steps, CFG 7.5, tau_f 0.8, tau_A 0.5."""

    steps: int = 50
    source_guidance: float = 1.0   # during inversion
    target_guidance: float = 7.5
    tau_f: float = 0.8             # fraction of the (first) steps with residual-feature injection
    tau_a: float = 0.5             # fraction of the (first) steps with self-attention query/key injection
    feature_layer: int = 4         # decoder residual block, on SD1.5's 12 (up_blocks[1].resnets[1])
    attention_from: int = 1        # first decoder self-attention layer, on SD1.5's 9

    def __post_init__(self) -> None:
        check_options("PnP", self, fractions=("tau_f", "tau_a"))
        if not isinstance(self.feature_layer, int) or not 0 <= self.feature_layer < SD15_DECODER_RESNETS:
            raise ValueError(f"PnP feature_layer={self.feature_layer!r} must be an integer in [0, "
                             f"{SD15_DECODER_RESNETS - 1}] (SD1.5's decoder residual blocks; 4 is the paper's)")
        if not isinstance(self.attention_from, int) or not 0 <= self.attention_from <= SD15_DECODER_SELF_ATTENTION:
            raise ValueError(f"PnP attention_from={self.attention_from!r} must be an integer in [0, "
                             f"{SD15_DECODER_SELF_ATTENTION}] (SD1.5's decoder self-attention layers; 1 is the paper's)")


def injection_modules(unet, options: PnPOptions) -> tuple[list, list]:
    """(the residual block's conv2, the self-attention q/k projections) that PnP injects into on this UNet."""
    resnets = decoder_resnets(unet)
    _, resnet = resnets[min(len(resnets) - 1, scale_layer(options.feature_layer, SD15_DECODER_RESNETS, len(resnets)))]
    attentions = self_attention_layers(unet, decoder_only=True)
    first = scale_layer(options.attention_from, SD15_DECODER_SELF_ATTENTION, len(attentions))
    chosen = [attn for _, attn in attentions[first:]]
    check_unfused(chosen)
    return [resnet.conv2], [proj for attn in chosen for proj in (attn.to_q, attn.to_k)]


@torch.no_grad()
def pnp_latents(pipe, x0_src: torch.Tensor, source: PromptCond, target: PromptCond,
                options: PnPOptions = PnPOptions(), generator: torch.Generator | None = None,
                progress: bool = True) -> torch.Tensor:
    """The edited latent; deterministic (`generator` is unused)."""
    trajectory, scheduler = invert_trajectory(pipe, x0_src, source, options.steps, options.source_guidance, progress)
    features, attention = RowCopy(), RowCopy()
    convs, projections = injection_modules(denoiser_of(pipe), options)
    n_features, n_attention = int(options.steps * options.tau_f), int(options.steps * options.tau_a)
    guided = options.target_guidance != 1.0
    source_rows, target_rows, batch = branch_rows(guided)
    # Both target branches take the source's conditional features (the last source row).
    pairs = [(row, source_rows[-1]) for row in target_rows]
    latents = trajectory[-1]
    hooks = [(m, features) for m in convs] + [(m, attention) for m in projections]
    with hooked(hooks):
        for i, t in enumerate(progress_bar(scheduler.timesteps, desc="PnP", disable=not progress, leave=False)):
            features.set(i < n_features, pairs, batch)
            attention.set(i < n_attention, pairs, batch)
            x_source = trajectory[options.steps - i]  # the source at this step's noise level, from the inversion
            # The source request's guidance only decides the batch layout: its prediction is not used.
            _, prediction = guided_predictions(pipe, t, [(scheduler.scale_model_input(x_source, t), source, 1.0),
                                                         (scheduler.scale_model_input(latents, t), target,
                                                          options.target_guidance)])
            latents = scheduler.step(prediction, t, latents).prev_sample
    return latents
