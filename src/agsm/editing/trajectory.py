"""The DDIM inversion trajectory kept step by step: the source branch of PnP, MasaCtrl and direct inversion.

`invert_trajectory` runs the same inversion as ddim_inversion.invert (DDIMInverseScheduler from the model's
scheduler config, source prompt, guidance `source_guidance`) and keeps every latent: z[0] = x0, ..., z[steps] = x_T.
Sampling step i (0-based, timestep t_i of DDIMScheduler) starts from noise level t_i, which is z[steps - i], and
lands on z[steps - i - 1].
"""
from __future__ import annotations

import torch
from .conditioning import PromptCond
from .ddim_inversion import _run, _schedulers
from .injection import same_schedule


@torch.no_grad()
def invert_trajectory(pipe, x0: torch.Tensor, source: PromptCond, steps: int, guidance: float,
                      progress: bool = True) -> tuple[list[torch.Tensor], object]:
    """([z_0 = x0, z_1, ..., z_steps = x_T], the forward DDIMScheduler set to `steps`)."""
    inverse, forward = _schedulers(pipe, steps)
    same_schedule(inverse.timesteps, forward.timesteps)
    trajectory = [x0]
    _run(inverse, pipe, x0, source, guidance, "DDIM inversion", progress, trajectory)
    return trajectory, forward


def check_options(method: str, options, fractions: tuple[str, ...] = ()) -> None:
    """The checks every DDIM-trajectory editor shares: steps an integer >= 1, guidances >= 1, fractions in [0, 1]."""
    if not isinstance(options.steps, int) or options.steps < 1:
        raise ValueError(f"{method} option steps={options.steps!r} must be an integer >= 1")
    for name in ("source_guidance", "target_guidance"):
        if getattr(options, name) < 1:
            raise ValueError(f"{method} {name}={getattr(options, name)} must be >= 1 (1 = no guidance)")
    for name in fractions:
        if not 0 <= getattr(options, name) <= 1:
            raise ValueError(f"{method} {name}={getattr(options, name)} is a fraction of the steps; use a value "
                             "in [0, 1]")
