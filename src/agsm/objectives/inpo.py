"""InPO (Lu et al., CVPR 2025, "InPO: Inversion Preference Optimization with Reparametrized DDIM for Efficient
Diffusion Model Alignment", arXiv 2503.18454): Diffusion-DPO on the latents DDIM inversion assigns to each image.

Diffusion-DPO noises the preferred and dispreferred images with random noise; InPO reparametrises DDIM as a one-step
generator x_t -> x_0 and takes, for each image, the latent x_t that DDIM inversion reaches from it, so the model is
tuned on the latents that actually lead to the preferred (and dispreferred) images:
    x_t^* = DDIM-Inversion(x_0^*, c)      (DDIM, Song et al. 2021 Eq. 12 with sigma = 0, run from x_0 up to t)
    eps^* = (x_t^* - sqrt(abar_t) x_0^*) / sqrt(1 - abar_t)        (the noise target re-derived from x_t and x_0)
and the Diffusion-DPO loss (objectives/dpo.py) at (x_t^*, t) against eps^* (InPO's DDIM-InPO objective).

As the public code does: t is drawn uniformly per pair (winner and loser share it); the inversion runs the coarse
DDIM grid of `method.inversion_steps` timesteps (10) from x_0 through every grid timestep below t, with the model
being trained (`invert_with policy`; `reference` uses the frozen start) and no gradient, adding
`inversion_eta` (0.1) times the DDIM posterior std of noise after each step; eps^* is then re-derived at t
itself. The public code's SD1.5 example uses beta = 2000 (method.beta). Inversion here is computed each step for
the step's batch (what the public code does): a resumed run recomputes exactly the same latents.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..backbones.base import TextCond
from .dpo import DpoOptions, draw_pair_noise, preference_loss_at
from .options import check, method_name
from .registry import MethodSpec, register


@dataclass
class InpoOptions(DpoOptions):
    """`method` when method.name is inpo: Diffusion-DPO's beta (the base) and the inversion's settings."""

    name: str = method_name("inpo")
    inversion_steps: int = field(default=10, metadata={
        "help": "DDIM inversion steps over the whole schedule (public code 10); x_t is the inversion's state at the "
                "last of its timesteps below t"})
    inversion_eta: float = field(default=0.1, metadata={
        "help": "noise added after each inversion step, times the DDIM posterior std (public code 0.1; 0: the "
                "deterministic inversion)"})
    invert_with: str = field(default="policy", metadata={
        "help": "the model that inverts, without gradient: policy (the model being trained, public code) | "
                "reference (the frozen start)"})

    def __post_init__(self):
        super().__post_init__()
        check(self.inversion_steps >= 1, f"method.inversion_steps {self.inversion_steps} must be >= 1")
        check(self.inversion_eta >= 0, f"method.inversion_eta {self.inversion_eta} must be >= 0")
        check(self.invert_with in ("policy", "reference"),
              f"method.invert_with {self.invert_with!r} is not one of 'policy', 'reference'")


@dataclass(frozen=True)
class InversionStep:
    """One DDIM inversion step: from the latent at abar_from to the one at timestep `t` (abar_to); noise_std is the
    DDIM posterior std the public code scales its optional noise by."""

    t: int
    abar_from: float
    abar_to: float
    noise_std: float


def ddim_inversion_step(x: torch.Tensor, eps: torch.Tensor, abar_from: float, abar_to: float) -> torch.Tensor:
    """x_to = sqrt(abar_to) x0_hat + sqrt(1 - abar_to) eps, with x0_hat = (x - sqrt(1 - abar_from) eps) / sqrt(abar_from)."""
    x0_hat = (x - (1 - abar_from) ** 0.5 * eps) / abar_from ** 0.5
    return abar_to ** 0.5 * x0_hat + (1 - abar_to) ** 0.5 * eps


def inversion_noise_target(x_t: torch.Tensor, x0: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t); abar_t [B] broadcast over the other dims."""
    a = abar_t.to(x_t.device, torch.float32).reshape(-1, *([1] * (x_t.ndim - 1)))
    return ((x_t.float() - a.sqrt() * x0.float()) / (1 - a).sqrt()).to(x_t.dtype)


def inversion_schedule(scheduler, steps: int) -> list[InversionStep]:
    """The grid of a diffusers DDIMInverseScheduler set to `steps`, ascending: each step's timestep, the abar it starts
    from (the previous grid point's, or the scheduler's initial one), the abar it reaches, and the posterior std of the
    step above it, sqrt((1 - a_t)/(1 - a_next) (1 - a_next/a_t)) (clamped to the last timestep)."""
    scheduler.set_timesteps(steps)
    abar = scheduler.alphas_cumprod.float()
    ratio = scheduler.config.num_train_timesteps // steps
    last = scheduler.config.num_train_timesteps - 1
    out = []
    for t in scheduler.timesteps.tolist():
        before = t - ratio
        a_from = float(abar[before]) if before >= 0 else float(scheduler.initial_alpha_cumprod)
        a_to, a_next = float(abar[t]), float(abar[min(t + ratio, last)])
        std = ((1 - a_to) / (1 - a_next) * (1 - a_next / a_to)) ** 0.5 if a_next < a_to else 0.0
        out.append(InversionStep(int(t), a_from, a_to, std))
    return out


@torch.no_grad()
def ddim_invert(eps_fn, x0: torch.Tensor, t: torch.Tensor, cond: TextCond, schedule: list[InversionStep],
                eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t of each sample: its x0 taken through every grid step whose timestep is below its own t [N].

    eps_fn(x, timesteps [n], cond) -> eps [n, ...] (no gradient). Samples whose t the grid has passed keep their
    latent; the eta noise is drawn for the whole batch at each step, so its draws do not depend on which are active."""
    x = x0.clone()
    for step in schedule:
        active = t.to(x.device) > step.t
        if not bool(active.any()):
            break
        timesteps = torch.full((int(active.sum()),), step.t, device=x.device)
        eps = eps_fn(x[active], timesteps, cond[active.to(cond.embeds.device)])
        moved = ddim_inversion_step(x[active].float(), eps.float(), step.abar_from, step.abar_to)
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator).to(x.device)[active]
            moved = moved + eta * step.noise_std * noise
        x[active] = moved.to(x.dtype)
    return x


def inpo_step(denoiser, batch, config, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One DDIM-InPO loss on a PreferenceBatch."""
    x0 = torch.cat([batch.x0_w, batch.x0_l])
    t, _ = draw_pair_noise(denoiser, batch.num_pairs, batch.x0_w, generator)
    cond = TextCond.cat([batch.cond, batch.cond])
    schedule = denoiser.inversion_schedule(config.inversion_steps)
    model = config.invert_with
    x_t = ddim_invert(lambda x, s, c: denoiser.predict_eps(x, s, c, model=model), x0, t, cond, schedule,
                      config.inversion_eta, generator)
    eps = inversion_noise_target(x_t, x0, denoiser.alphas_cumprod.to(t.device)[t.long()])
    y = denoiser.target(x0, eps, t)  # eps itself for an eps model; v re-derived from it for a v model
    loss, logs = preference_loss_at(denoiser, x0, x_t, t, cond, y, config.beta)
    return loss, logs


register(MethodSpec("inpo", InpoOptions, inpo_step, data="pairs", trains="backbone",
                    unet_only="runs DDIM (inversion or sampling)",
                    about="InPO (Lu et al., CVPR 2025): Diffusion-DPO on the latents DDIM inversion gives each image"))
