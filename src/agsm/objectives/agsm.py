"""AGSM: score matching towards targets shifted by the model's own implicit alignment reward.

docs/method.md, "AGSM loss", steps 1-8; the step below is the thin model-calling layer around the pure math.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .options import TokenMethodOptions, check, method_name
from .pairs import PairBatch, draw_noise, on_device, per_pair_mse, tile, where_true
from .registry import MethodSpec, register


@dataclass
class AgsmOptions(TokenMethodOptions):
    """`method` when method.name is agsm (docs/method.md "AGSM loss"); the token family's options come from the base."""

    name: str = method_name("agsm")
    gamma_pos: float = field(default=1.0, metadata={
        "help": "weight of the guidance shift in the positive pairs' targets, y + gamma_pos D"})
    gamma_neg: float = field(default=1.0, metadata={
        "help": "weight of the shift in the negative pairs' targets, y - gamma_neg D; 0 drops psi- and the negative "
                "term (the positive-only ablation)"})
    temperature: float = field(default=0.1, metadata={
        "help": "Plackett-Luce softmax temperature over the captions (public code value)"})
    # docs/study.md, item 1: why v-space
    reward_space: str = field(default="target", metadata={
        "help": "where the implicit reward's error is measured: target (the model's target space: paper, code) | "
                "velocity (v-space, beyond the paper: an eps model's reward gaps no longer vanish at large t)"})
    shared_tokens: bool = field(default=False, metadata={"help": "ablation: psi+ and psi- are one tensor"})
    ema_at: str = field(default="auto", metadata={
        "help": "where the EMA prediction is evaluated: previous_step (one Euler step earlier, x_{t+dt}: the paper's "
                "derivation) | x_t (public code) | auto (previous_step on flow backbones, x_t on UNets)"})
    ema_step: float = field(default=1000 / 28, metadata={
        "help": "dt of ema_at previous_step, in timesteps: 1000 / 28, one step of the 28-step SD3 sampler"})

    def __post_init__(self):
        super().__post_init__()
        check(self.temperature > 0, f"method.temperature {self.temperature} must be > 0")
        check(self.ema_at in ("auto", "x_t", "previous_step"),
              f"method.ema_at {self.ema_at!r} is not one of 'auto', 'x_t', 'previous_step'")
        check(self.ema_step > 0, f"method.ema_step {self.ema_step} must be > 0")
        check(self.reward_space in ("target", "velocity"),
              f"method.reward_space {self.reward_space!r} is not one of 'target', 'velocity'")
        check(self.gamma_pos >= 0, f"method.gamma_pos {self.gamma_pos} must be >= 0")
        check(self.gamma_neg >= 0, f"method.gamma_neg {self.gamma_neg} must be >= 0 (0: the positive-only ablation)")


def agsm_token_sets(options: AgsmOptions) -> int:
    """AGSM trains psi+ and psi- unless the tokens are shared or negatives are dropped (gamma_neg = 0)."""
    return 1 if options.shared_tokens or options.gamma_neg == 0 else 2


def agsm_targets(y: torch.Tensor, ema_pred: torch.Tensor, pos_index: torch.Tensor, gamma_pos: float,
                 gamma_neg: float, temperature: float,
                 reward_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted regression targets [B, K, ...] and Plackett-Luce weights [B, K].

    r_ik = -mean (e_ik - y_i)^2 (step 3); w_ik = softmax_k(r_ik / T) (step 4);
    D_ik = e_ik - sum_j w_ij e_ij (step 5); targets y_i + gamma_pos D_ii, y_i - gamma_neg D_ik (step 6).
    reward_scale [B] (optional, beyond the paper) multiplies each image's rewards: the paper's time factor A(t)
    is 1; method.reward_space velocity measures the error in v-space instead, 1 / abar_t for eps models.
    """
    b, k = ema_pred.shape[:2]
    ema = ema_pred.float()
    y = y.float()[:, None]  # [B, 1, ...]
    rewards = -(ema - y).pow(2).reshape(b, k, -1).mean(-1)  # [B, K]
    if reward_scale is not None:
        rewards = rewards * reward_scale.float().reshape(b, 1)
    weights = torch.softmax(rewards / temperature, dim=1)
    w = weights.reshape(b, k, *([1] * (ema.ndim - 2)))
    direction = ema - (w * ema).sum(1, keepdim=True)  # [B, K, ...]
    positive = torch.nn.functional.one_hot(pos_index, k).bool().reshape(w.shape)
    shift = torch.where(positive, gamma_pos * direction, -gamma_neg * direction)
    return y + shift, weights


def ema_point(denoiser, x0, eps, x_t, t, config) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the EMA predictions are taken: at x_t (public code), or one Euler step earlier on the same straight
    path, x_{t+dt} = x_t + (dt / T)(eps - x0), for flow backbones (the paper's derivation; docs/method.md)."""
    flow = getattr(denoiser, "is_flow", False)
    at = config.ema_at if config.ema_at != "auto" else ("previous_step" if flow else "x_t")
    if at == "x_t":
        return x_t, t
    if not flow:
        raise ValueError("method.ema_at 'previous_step' is defined for flow backbones (SD3); use 'x_t' or 'auto' "
                         "for UNet models")
    t_prev = (t.float() + config.ema_step).clamp(max=denoiser.max_timestep)
    return denoiser.add_noise(x0, eps, t_prev), t_prev


def agsm_step(denoiser, batch: PairBatch, config, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One AGSM loss: EMA predictions for every pair (no grad), then online predictions vs shifted targets.

    With gamma_neg = 0 the negatives' online predictions are not computed: their targets do not enter the loss.
    """
    x0 = batch.x0
    t, eps = draw_noise(denoiser, x0, generator, config.noise_sharing)
    x_t, y = denoiser.add_noise(x0, eps, t), denoiser.target(x0, eps, t)
    b, k = batch.num_images, batch.num_captions

    with torch.no_grad():
        x_ema, t_ema = ema_point(denoiser, x0, eps, x_t, t, config)
        ema_pred = denoiser(*tile(batch, x_ema, t_ema), ema=True).reshape(b, k, *x0.shape[1:])
    scale = denoiser.backbone.velocity_factor(t_ema) if config.reward_space == "velocity" else None
    targets, weights = agsm_targets(y, ema_pred, on_device(batch.pos_index, x0.device), config.gamma_pos,
                                    config.gamma_neg, config.temperature, scale)

    # Which pairs are positive, and whose loss we need, is known on the host: selections go by index (pairs.py).
    positive = batch.positive_mask().cpu()  # [B, K]
    rows = positive if config.gamma_neg == 0 else torch.ones_like(positive)  # pairs whose loss we need
    pred = denoiser(*tile(batch, x_t, t, rows))
    dev = x0.device
    mse = per_pair_mse(pred, targets.flatten(0, 1)[where_true(rows, dev)])  # row-major, as tile() orders them
    is_pos = positive[rows]
    loss_pos = mse[where_true(is_pos, dev)].mean()
    loss_neg = mse[where_true(~is_pos, dev)].mean() if bool((~is_pos).any()) else mse.new_zeros(())  # host bool
    own_weight = weights.flatten()[where_true(positive, dev)].mean()
    # How far the targets move from plain denoising, relative to the target's own size (RMS over pairs).
    shift = (targets - y.float()[:, None]).pow(2).flatten(2).mean(-1).flatten()  # [B K]
    y_rms = y.float().pow(2).mean().sqrt()
    return loss_pos + loss_neg, {"loss_pos": loss_pos.detach(), "loss_neg": loss_neg.detach(),
                                 "own_caption_weight": own_weight.detach(),
                                 "shift_rms_pos": (shift[where_true(positive, dev)].mean().sqrt() / y_rms).detach(),
                                 "shift_rms_neg": (shift[where_true(~positive, dev)].mean().sqrt() / y_rms).detach()}


register(MethodSpec("agsm", AgsmOptions, agsm_step, data="captions", trains="tokens", token_sets=agsm_token_sets,
                    batch_coupling="in-batch negatives: each image's softmax weights run over its batch's captions",
                    about="AGSM: score matching towards targets shifted by the model's implicit alignment reward "
                          "(soft tokens psi+ and psi-)"))
