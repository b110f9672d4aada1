"""What the denoiser predicts, as a small strategy: the regression target for (x0, eps, t)."""
from __future__ import annotations

import torch


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather a per-timestep schedule at t and broadcast it against `like` [B, ...].

    On like's device, with the (host) schedule copied there without waiting: moving t to the host instead would
    wait for the device, a sync in every step (issue 17)."""
    out = values.to(like.device, non_blocking=True)[t.to(like.device).long()].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


class Epsilon:
    """The model predicts the noise: y = eps."""

    name = "epsilon"

    def target(self, x0, eps, t, alphas_cumprod):
        return eps

    def velocity_factor(self, t, alphas_cumprod):
        """[B] 1 / abar_t: at a fixed x_t, v = (eps - sqrt(1 - abar) x_t) / sqrt(abar), so a v error is an eps error
        over sqrt(abar_t), and its square is the eps error's square over abar_t."""
        return 1.0 / alphas_cumprod.to(t.device, non_blocking=True)[t.long()]


class VPrediction:
    """The model predicts v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)."""

    name = "v_prediction"

    def target(self, x0, eps, t, alphas_cumprod):
        abar = _per_sample(alphas_cumprod, t, x0)
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0

    def velocity_factor(self, t, alphas_cumprod):
        return torch.ones(t.shape, device=t.device)


PARAMETERIZATIONS = {p.name: p for p in (Epsilon(), VPrediction())}


def parameterization_for(prediction_type: str):
    try:
        return PARAMETERIZATIONS[prediction_type]
    except KeyError:
        raise ValueError(f"prediction_type {prediction_type!r} is not supported; "
                         f"supported: {sorted(PARAMETERIZATIONS)}") from None


def add_noise(x0, eps, t, alphas_cumprod):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
    abar = _per_sample(alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


# ---- flow matching (SD3): x_t = (1 - s) x0 + s eps with s = t / T; the model predicts v = eps - x0 ----
def flow_sigma(t: torch.Tensor, num_train_timesteps: int, like: torch.Tensor) -> torch.Tensor:
    """s = t / T per sample, broadcast against `like` [B, ...]."""
    s = t.to(like.device, torch.float32) / num_train_timesteps
    return s.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def flow_add_noise(x0, eps, t, num_train_timesteps: int):
    """x_t = (1 - s) x0 + s eps."""
    s = flow_sigma(t, num_train_timesteps, x0)
    return (1 - s) * x0 + s * eps


def flow_target(x0, eps):
    """The velocity the model regresses: y = eps - x0 (the same at every t along the straight path)."""
    return eps - x0


def sample_flow_timesteps(n: int, generator: torch.Generator, num_train_timesteps: int, sampling: str = "uniform",
                          shift: float = 1.0, logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """Continuous t in [0, T): s uniform (public code) or logit-normal (SD3 pretraining), then SD3's shift
    s' = shift s / (1 + (shift - 1) s), which moves mass towards noise for shift > 1."""
    if sampling == "uniform":
        s = torch.rand(n, generator=generator)
    elif sampling == "logit_normal":
        s = torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator))
    else:
        raise ValueError(f"timestep sampling {sampling!r} is not one of 'uniform', 'logit_normal'")
    s = shift * s / (1 + (shift - 1) * s)
    return s * num_train_timesteps
