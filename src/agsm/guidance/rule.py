"""The alignment-guidance rule: the AGSM target (docs/method.md, "AGSM loss") applied by the frozen model itself.

AGSM trains tokens towards E[y + gamma D | x_t, c]. E[y | x_t, c] is the frozen model's own prediction eps(c), so
the best any token set can reach is to sample with

    eps(c) + gamma * D,   D = eps(c) - sum_j w_j eps(c_j),   j over {c, c_1 .. c_{K-1}},
    w = softmax(r / T),   r_j = -(scale) * mean (eps(c_j) - eps(c))^2     (so r_c = 0),

the c_j being K-1 negative captions. Training weighs each caption by its error against the true target y; at
sampling y is unknown, so the weights are computed with the plug-in estimate E[y] = eps(c): w(E[y]) stands in for
E[w(y)], which it is not in general (w is not linear in y). It is the natural estimate with no more model calls.
Flow models (SD3) use the same formula on velocities (their target y = eps - x0).

The rewards, their time scale and the weights come from the objective's own function (agsm.objectives.agsm
.agsm_targets), so the tool and the training target cannot drift apart.
"""
from __future__ import annotations

import torch

from ..backbones.parameterization import parameterization_for
from ..objectives.agsm import agsm_targets

REWARD_SPACES = ("target", "velocity")


def caption_weights(own: torch.Tensor, others: torch.Tensor, temperature: float,
                    reward_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Plackett-Luce weights [B, K] over {c, c_1 .. c_{K-1}} (own caption first) with E[y] = own as the target.

    own [B, ...], others [B, K-1, ...]; reward_scale [B] or None, as in agsm_targets."""
    predictions = torch.cat([own[:, None], others], dim=1)
    first = torch.zeros(own.shape[0], dtype=torch.long, device=own.device)
    # gamma_neg 0: only the weights are used here, and the negative pairs' targets do not matter for them
    _, weights = agsm_targets(own, predictions, first, 1.0, 0.0, temperature, reward_scale)
    return weights


def alignment_direction(own: torch.Tensor, others: torch.Tensor, temperature: float,
                        reward_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """D = own - sum_j w_j e_j [B, ...] (float32) and the weights [B, K]."""
    weights = caption_weights(own, others, temperature, reward_scale)
    predictions = torch.cat([own[:, None], others], dim=1).float()
    mixed = (weights.reshape(*weights.shape, *([1] * (own.ndim - 1))) * predictions).sum(1)
    return own.float() - mixed, weights


def reward_scale_at(pipe, timestep, rows: int, reward_space: str, device) -> torch.Tensor | None:
    """The rewards' time factor at the sampler's timestep, as the objective's `method.reward_space` defines it:
    target -> None (1: the paper); velocity -> 1 / abar_t for epsilon models, 1 for v-prediction and flow models
    (whose prediction already is a velocity)."""
    if reward_space not in REWARD_SPACES:
        raise ValueError(f"reward_space {reward_space!r} is not one of {', '.join(REWARD_SPACES)}")
    if reward_space == "target":
        return None
    scheduler = pipe.scheduler
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:  # a flow scheduler: the prediction is the velocity
        return torch.ones(rows, device=device)
    t = torch.as_tensor(timestep).reshape(-1)[:1].long().cpu().expand(rows)
    param = parameterization_for(scheduler.config.get("prediction_type", "epsilon"))
    return param.velocity_factor(t, alphas).float().to(device)
