"""The thin layer between objectives and model: a backbone plus online and EMA soft tokens."""
from __future__ import annotations

import torch

from ..backbones.base import TextCond


class BackboneDiffusion:
    """What every objective's model layer passes straight to the backbone: noising, the target, timesteps."""

    backbone = None

    def add_noise(self, x0, eps, t):
        return self.backbone.add_noise(x0, eps, t)

    def target(self, x0, eps, t):
        return self.backbone.target(x0, eps, t)

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.backbone.sample_timesteps(n, generator)


class TokenDenoiser(BackboneDiffusion):
    """Predicts per pair with the online tokens (or the EMA tokens, `ema=True`), token set chosen per pair."""

    def __init__(self, backbone, injector, tokens, ema_tokens=None):
        self.backbone, self.injector, self.tokens, self.ema_tokens = backbone, injector, tokens, ema_tokens
        self.is_flow = backbone.family == "mmdit"
        self.max_timestep = float(backbone.num_train_timesteps)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond, set_index: torch.Tensor,
                 ema: bool = False) -> torch.Tensor:
        tokens = self.ema_tokens if ema else self.tokens
        if tokens is None:
            raise RuntimeError("EMA predictions were asked for but this denoiser has no EMA tokens")
        with self.injector.use(tokens, set_index):
            return self.backbone.predict(x_t, t, cond)


@torch.no_grad()
def update_ema(ema_tokens: torch.nn.Module, tokens: torch.nn.Module, decay: float) -> None:
    """psi^ <- d psi^ + (1 - d) psi. Two lines of lerp keep the EMA a live module we can run forwards with."""
    for ema_p, p in zip(ema_tokens.parameters(), tokens.parameters()):
        ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - decay)
