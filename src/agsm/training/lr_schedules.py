"""The learning-rate schedule of a run (train.lr_scheduler, train.lr_warmup_steps).

    constant              lr throughout
    cosine                lr down to min_lr along half a cosine, once over the run's steps
    cosine_with_restarts  the same every restart_every steps (torch's CosineAnnealingWarmRestarts; the default)
    linear                lr down to min_lr in a straight line over the run's steps

With lr_warmup_steps w > 0 the rate first rises linearly, lr * (s + 1) / (w + 1) at step s < w, so no step is spent
at rate 0; the schedule proper then starts at step w and runs over the steps left.

The default (cosine_with_restarts, no warm-up) is torch's CosineAnnealingWarmRestarts itself, as before these options
existed, so default runs stay bit-identical. The others are a LambdaLR of the step: its state_dict (the step) is
checkpointed like any scheduler's, and the factor is a pure function of the step, so a resumed run gets the rates the
uninterrupted one had.
"""
from __future__ import annotations

import math

import torch


def make_lr_scheduler(optimizer: torch.optim.Optimizer, tc) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler `tc` (the run's TrainConfig) names, stepped once per optimiser step."""
    if tc.lr_scheduler == "cosine_with_restarts" and tc.lr_warmup_steps == 0:
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=tc.restart_every,
                                                                    eta_min=tc.min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(tc))


def lr_factor(tc):
    """step -> the learning rate at that step as a multiple of tc.lr (LambdaLR's factor)."""
    kind, warmup, total = tc.lr_scheduler, tc.lr_warmup_steps, tc.steps
    # min_lr as a share of lr; an lr of 0 trains nothing whatever the schedule, so its floor is 0 too.
    floor = tc.min_lr / tc.lr if tc.lr else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t, span = step - warmup, max(1, total - warmup)
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return floor + (1.0 - floor) * max(0.0, 1.0 - t / span)
        if kind == "cosine":
            return floor + (1.0 - floor) * (1 + math.cos(math.pi * min(t, span) / span)) / 2
        if kind == "cosine_with_restarts":  # CosineAnnealingWarmRestarts' closed form, after the warm-up
            return floor + (1.0 - floor) * (1 + math.cos(math.pi * (t % tc.restart_every) / tc.restart_every)) / 2
        raise ValueError(f"train.lr_scheduler {kind!r} is not one of constant, cosine, cosine_with_restarts, linear")

    return factor
