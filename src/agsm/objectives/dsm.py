"""Plain denoising score matching on positive pairs with psi+: the reference the two methods shift from."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .options import TokenMethodOptions, method_name
from .pairs import PairBatch, draw_noise, per_pair_mse, tile
from .registry import MethodSpec, register


@dataclass
class DsmOptions(TokenMethodOptions):
    """`method` when method.name is dsm: the token family's options only."""

    name: str = method_name("dsm")


def dsm_step(denoiser, batch: PairBatch, config, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    x0 = batch.x0
    t, eps = draw_noise(denoiser, x0, generator, config.noise_sharing)
    x_t, y = denoiser.add_noise(x0, eps, t), denoiser.target(x0, eps, t)
    pred = denoiser(*tile(batch, x_t, t, batch.positive_mask()))  # a host mask: no sync (pairs.py)
    loss = per_pair_mse(pred, y).mean()
    return loss, {}


register(MethodSpec("dsm", DsmOptions, dsm_step, data="captions", trains="tokens",
                    about="plain denoising score matching on the positive pairs (the reference AGSM shifts from)"))
