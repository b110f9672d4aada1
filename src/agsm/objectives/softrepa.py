"""SoftREPA (Lee et al. 2025): contrastive soft tokens, the baseline AGSM improves on (docs/method.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .options import TokenMethodOptions, check, method_name
from .pairs import PairBatch, draw_noise, on_device, per_pair_mse, tile, where_true
from .registry import MethodSpec, register


@dataclass
class SoftrepaOptions(TokenMethodOptions):
    """`method` when method.name is softrepa; the token family's options come from the base."""

    name: str = method_name("softrepa")
    temperature: float = field(default=0.07, metadata={
        "help": "tau in logits = scale * exp(-err / tau) (public code 0.07)"})
    scale: float = field(default=4.0, metadata={"help": "scale in logits = scale * exp(-err / tau) (public code 4)"})
    diagonal_weight: float = field(default=0.0, metadata={
        "help": "weight d of the extra d * mean positive-pair error (public code: 10 on SD1.5/SDXL, 0 on SD3)"})

    def __post_init__(self):
        super().__post_init__()
        check(self.temperature > 0, f"method.temperature {self.temperature} must be > 0")
        check(self.scale > 0, f"method.scale {self.scale} must be > 0 (a negative scale rewards the wrong caption)")
        check(self.diagonal_weight >= 0, f"method.diagonal_weight {self.diagonal_weight} must be >= 0")


def softrepa_loss(err: torch.Tensor, pos_index: torch.Tensor, temperature: float = 0.07, scale: float = 4.0,
                  reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over captions k of logits scale * exp(-err_ik / temperature); err [B, K]."""
    logits = scale * torch.exp(-err.float() / temperature)
    return torch.nn.functional.cross_entropy(logits, pos_index, reduction=reduction)


def softrepa_step(denoiser, batch: PairBatch, config, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """All pairs of an image share t and eps; optional + d * mean_i err_ii (public code: d = 10 on UNets)."""
    x0 = batch.x0
    t, eps = draw_noise(denoiser, x0, generator, config.noise_sharing)
    x_t, y = denoiser.add_noise(x0, eps, t), denoiser.target(x0, eps, t)
    b, k = batch.num_images, batch.num_captions
    x_pairs, t_pairs, cond, set_index = tile(batch, x_t, t)
    # SoftREPA has one token set: every pair uses psi+.
    pred = denoiser(x_pairs, t_pairs, cond, torch.zeros_like(set_index))
    err = per_pair_mse(pred, y.repeat_interleave(k, dim=0)).reshape(b, k)
    pos = on_device(batch.pos_index, x0.device)
    contrastive = softrepa_loss(err, pos, config.temperature, config.scale)
    diagonal = err.gather(1, pos[:, None]).mean()
    loss = contrastive + config.diagonal_weight * diagonal
    # The negatives picked by index from the host's mask: a device-side bool selection would sync (pairs.py).
    negatives = where_true(~batch.positive_mask(), x0.device)
    return loss, {"contrastive": contrastive.detach(), "err_pos": diagonal.detach(),
                  "err_neg": err.flatten()[negatives].mean().detach() if k > 1 else diagonal.detach()}


register(MethodSpec("softrepa", SoftrepaOptions, softrepa_step, data="captions", trains="tokens",
                    batch_coupling="in-batch negatives: each image's contrastive logits run over its batch's captions",
                    about="SoftREPA (Lee et al. 2025): contrastive soft tokens, one set"))
