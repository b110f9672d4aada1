"""Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization",
arXiv 2311.12908): the backbone learns to denoise preferred images better, and dispreferred ones worse, than a frozen
reference does.

The paper's objective (Sec. 4, Eq. 14):
    L(theta) = -E log sigmoid(-beta T w(lambda_t) [ ||eps_w - eps_theta(x_t^w, t)||^2 - ||eps_w - eps_ref(x_t^w, t)||^2
                                                  - (||eps_l - eps_theta(x_t^l, t)||^2 - ||eps_l - eps_ref(x_t^l, t)||^2) ])
with the winner's and loser's latents noised at the same t with the same noise. As the public training script does,
T w(lambda_t) is folded into the constant: the inside is -beta/2 times the difference of per-sample mean squared
errors, and beta = 5000 is its default (and its SD1.5 launcher's). The errors are measured against the backbone's own
regression target (eps, v, or flow velocity), so the step serves every parameterisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..backbones.base import TextCond
from .options import MethodOptions, check, method_name
from .pairs import per_pair_mse
from .registry import MethodSpec, register


@dataclass
class DpoOptions(MethodOptions):
    """`method` when method.name is dpo; InPO's options extend these (it shares the loss and its beta)."""

    name: str = method_name("dpo")
    beta: float = field(default=5000.0, metadata={
        "help": "Diffusion-DPO and InPO: beta in -log sigmoid(-beta/2 [(err_w - ref_w) - (err_l - ref_l)]) (the "
                "public Diffusion-DPO script's default and SD1.5 launcher: 5000; InPO's SD1.5 example: 2000)"})

    def __post_init__(self):
        super().__post_init__()
        check(self.beta > 0, f"method.beta {self.beta} must be > 0")


def diffusion_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor,
                       beta: float) -> torch.Tensor:
    """Per-pair -log sigmoid(-beta/2 [(err_w - ref_err_w) - (err_l - ref_err_l)]); every argument [B]."""
    inside = -0.5 * beta * ((err_w - ref_err_w) - (err_l - ref_err_l))
    return -F.logsigmoid(inside)


def preference_loss_at(denoiser, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond,
                       y: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """The DPO loss of 2B latents (winners, then losers) at x_t, t against targets y, and its diagnostics.

    x0 is unused by the math; it is kept so callers pass the whole sample (logs compare errors per half)."""
    b = x0.shape[0] // 2
    pred = denoiser(x_t, t, cond)
    with torch.no_grad():
        ref = denoiser.reference(x_t, t, cond)
    err, ref_err = per_pair_mse(pred, y), per_pair_mse(ref, y)
    losses = diffusion_dpo_loss(err[:b], err[b:], ref_err[:b].detach(), ref_err[b:].detach(), beta)
    margin = (err[:b] - ref_err[:b]) - (err[b:] - ref_err[b:])
    return losses.mean(), {"implicit_accuracy": (margin < 0).float().mean().detach(),
                           "err_w": err[:b].mean().detach(), "err_l": err[b:].mean().detach(),
                           "ref_err_w": ref_err[:b].mean(), "ref_err_l": ref_err[b:].mean()}


def draw_pair_noise(denoiser, b: int, like: torch.Tensor, generator: torch.Generator):
    """t [2B] and eps [2B, ...]: one draw per pair, shared by its winner (first half) and loser (second half)."""
    t = denoiser.sample_timesteps(b, generator).to(like.device)
    eps = torch.randn((b, *like.shape[1:]), generator=generator).to(like.device, like.dtype)
    return torch.cat([t, t]), torch.cat([eps, eps])


def dpo_step(denoiser, batch, config, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One Diffusion-DPO loss on a PreferenceBatch: winners and losers noised alike, policy vs frozen reference."""
    x0 = torch.cat([batch.x0_w, batch.x0_l])
    t, eps = draw_pair_noise(denoiser, batch.num_pairs, batch.x0_w, generator)
    x_t, y = denoiser.add_noise(x0, eps, t), denoiser.target(x0, eps, t)
    return preference_loss_at(denoiser, x0, x_t, t, TextCond.cat([batch.cond, batch.cond]), y, config.beta)


register(MethodSpec("dpo", DpoOptions, dpo_step, data="pairs", trains="backbone",
                    about="Diffusion-DPO (Wallace et al. 2023): the backbone, on preference pairs"))
