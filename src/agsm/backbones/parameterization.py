"""What the denoiser predicts, as a small strategy: the regression target for (x0, eps, t)."""
from __future__ import annotations

import torch


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather a per-timestep schedule at t and broadcast it against `like` [B, ...]."""
    out = values.to(like.device)[t.to(values.device).long()].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


class Epsilon:
    """The model predicts the noise: y = eps."""

    name = "epsilon"

    def target(self, x0, eps, t, alphas_cumprod):
        return eps


class VPrediction:
    """The model predicts v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)."""

    name = "v_prediction"

    def target(self, x0, eps, t, alphas_cumprod):
        abar = _per_sample(alphas_cumprod, t, x0)
        return abar.sqrt() * eps - (1 - abar).sqrt() * x0


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
