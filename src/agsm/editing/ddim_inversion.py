"""DDIM inversion editing for UNet pipelines (SD1.5, SDXL): invert with the source prompt, resample with the target.

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle")   # a UNet pipeline -> DDIM inversion

The source latent is run up the deterministic DDIM trajectory to noise with diffusers'
DDIMInverseScheduler (source prompt, guidance 1 by default: guidance makes inversion drift), then
down again with DDIMScheduler and the target prompt under classifier-free guidance. Both schedulers
are built from the pipeline's scheduler config, so the noise schedule and parameterisation are the model's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions


@dataclass(frozen=True)
class DDIMInversionOptions:
    steps: int = 50
    source_guidance: float = 1.0   # during inversion
    target_guidance: float = 7.5   # during resampling

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"DDIM inversion option steps={self.steps!r} must be an integer >= 1")
        for name in ("source_guidance", "target_guidance"):
            if getattr(self, name) < 1:
                raise ValueError(f"DDIM inversion {name}={getattr(self, name)} must be >= 1 (1 = no guidance)")


def _schedulers(pipe, steps: int):
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    if "beta_schedule" not in pipe.scheduler.config:
        raise ValueError(f"DDIM inversion needs a diffusion (beta schedule) scheduler, got "
                         f"{type(pipe.scheduler).__name__}; use it with an SD1.5 or SDXL pipeline")
    if steps > pipe.scheduler.config.num_train_timesteps:
        raise ValueError(f"steps={steps} exceeds the model's {pipe.scheduler.config.num_train_timesteps} "
                         "training timesteps; use fewer steps")
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    forward = DDIMScheduler.from_config(pipe.scheduler.config)
    inverse.set_timesteps(steps)
    forward.set_timesteps(steps)
    return inverse, forward


@torch.no_grad()
def _run(scheduler, pipe, latents, cond: PromptCond, guidance: float, desc: str, progress: bool,
         trajectory: list | None = None):
    """The scheduler's DDIM steps from `latents`; each step's latent is appended to `trajectory` when given."""
    for t in progress_bar(scheduler.timesteps, desc=desc, disable=not progress, leave=False):
        model_in = scheduler.scale_model_input(latents, t)
        (prediction,) = guided_predictions(pipe, t, [(model_in, cond, guidance)])
        latents = scheduler.step(prediction, t, latents).prev_sample
        if trajectory is not None:
            trajectory.append(latents)
    return latents


def invert(pipe, x0: torch.Tensor, source: PromptCond, options: DDIMInversionOptions = DDIMInversionOptions(),
           progress: bool = True) -> torch.Tensor:
    """The noise latent x_T whose DDIM trajectory under the source prompt ends near x0."""
    inverse, _ = _schedulers(pipe, options.steps)
    return _run(inverse, pipe, x0, source, options.source_guidance, "DDIM inversion", progress)


def regenerate(pipe, x_t: torch.Tensor, target: PromptCond, options: DDIMInversionOptions = DDIMInversionOptions(),
               progress: bool = True) -> torch.Tensor:
    """DDIM sampling from x_T with the target prompt."""
    _, forward = _schedulers(pipe, options.steps)
    return _run(forward, pipe, x_t, target, options.target_guidance, "DDIM sampling", progress)


def ddim_edit_latents(pipe, x0_src: torch.Tensor, source: PromptCond, target: PromptCond,
                      options: DDIMInversionOptions = DDIMInversionOptions(), generator: torch.Generator | None = None,
                      progress: bool = True) -> torch.Tensor:
    """Invert x0 under the source prompt, regenerate under the target; deterministic (`generator` is unused)."""
    return regenerate(pipe, invert(pipe, x0_src, source, options, progress), target, options, progress)
