"""RF-Inversion (Rout et al. 2024, "Semantic image inversion and editing using rectified stochastic
differential equations", ICLR 2025): controlled inversion of the source, then controlled sampling of the target.

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle", method="rf_inversion", eta=0.9)

Written in SD3's flow convention: x_s = (1 - s) x0 + s eps, the denoiser predicts v = dx/ds (noise minus data),
sampling runs s from 1 to 0. The paper writes time t = 1 - s and u = -v; both ODEs below are its, re-signed.

1. Controlled forward ODE (paper Eq. 8, Algorithm 1), image -> noise, s from 0 up to 1. A noise sample y1 is
   drawn once; the conditional field that carries Y straight to it is (y1 - Y) / (1 - s) (Eq. 6), and

       Y <- Y + (s_next - s) [v(Y, s, null) + gamma ((y1 - Y) / (1 - s) - v(Y, s, null))].

   gamma = 0 is plain Euler inversion; gamma = 1 lands exactly on y1. The paper inverts with the null prompt
   ("", the unconditional field), `invert_with="null"`; `"source"` uses the source prompt at `source_guidance`.
2. Controlled reverse ODE (Eq. 15, Algorithm 2), noise -> image, s from 1 down to 0, from Y at s = 1. The
   conditional field back to the source latent y0 is (X - y0) / s in this convention, and
       X <- X + (s_next - s) [v_w(X, s, target) + eta_i ((X - y0) / s - v_w(X, s, target))],
   v_w the target prompt's classifier-free-guided velocity; eta_i = eta for the steps i in
   [start_time * steps, stop_time * steps), 0 after (the paper's starting and stopping times).

Defaults are the authors' editing settings (their README and diffusers pipeline, for FLUX): 28 steps,
gamma 0.5, eta 0.9, start 0, stop 7/28 of the steps, kept as fractions so they scale with `steps`. FLUX-dev
has distilled guidance (3.5) instead of CFG; on SD3 the target uses real CFG at the stock SD3 pipeline's
default 7.0 (the paper gives no SD3 value).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions
from .flowedit import flow_schedule
from .prompt_mix import null_prompt

INVERT_WITH = ("null", "source")


@dataclass(frozen=True)
class RFInversionOptions:
    """The authors' defaults: 28 steps, gamma 0.5, eta 0.9 over the first 7/28 of the steps."""

    steps: int = 28
    gamma: float = 0.5               # controller guidance of the forward ODE (towards the noise sample y1)
    eta: float = 0.9                 # controller guidance of the reverse ODE (towards the source latent y0)
    start_time: float = 0.0          # eta acts from step round(start_time * steps) ...
    stop_time: float = 7 / 28        # ... up to (not including) step round(stop_time * steps)
    source_guidance: float = 1.0     # CFG of the inversion; 1 = the paper's single (null prompt) prediction
    target_guidance: float = 7.0     # CFG of the target prompt (stock SD3 default; FLUX has no CFG)
    invert_with: str = "null"        # the inversion's prompt: "null" ("", the paper's) or "source"

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"RF-Inversion option steps={self.steps!r} must be an integer >= 1")
        for name in ("gamma", "eta"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"RF-Inversion {name}={getattr(self, name)} must be in [0, 1] "
                                 f"(0 = no control, 1 = follow the conditional field only)")
        if not 0 <= self.start_time <= self.stop_time <= 1:
            raise ValueError(f"RF-Inversion needs 0 <= start_time <= stop_time <= 1, got start_time="
                             f"{self.start_time}, stop_time={self.stop_time} (fractions of the steps)")
        for name in ("source_guidance", "target_guidance"):
            if getattr(self, name) < 1:
                raise ValueError(f"RF-Inversion {name}={getattr(self, name)} must be >= 1 (1 = no guidance)")
        if self.invert_with not in INVERT_WITH:
            raise ValueError(f"RF-Inversion invert_with={self.invert_with!r} must be one of {INVERT_WITH}")

    @property
    def eta_steps(self) -> range:
        """Indices of the reverse steps on which eta acts."""
        return range(round(self.start_time * self.steps), round(self.stop_time * self.steps))


def _timestep(pipe, s: torch.Tensor) -> torch.Tensor:
    """The denoiser's timestep for noise level s (FlowMatchEulerDiscreteScheduler: t = s * num_train_timesteps)."""
    return s * pipe.scheduler.config.num_train_timesteps


@torch.no_grad()
def rf_invert(pipe, y0: torch.Tensor, prompt: PromptCond, guidance: float, gamma: float, sigmas: torch.Tensor,
              y1: torch.Tensor, progress: bool = True) -> torch.Tensor:
    """The controlled forward ODE (Eq. 8): y0 at s = 0 to structured noise at s = 1 over the reversed `sigmas`."""
    levels = sigmas.flip(0)  # 0 = s_N < ... < s_0 = 1
    y = y0.clone()
    for i in progress_bar(range(len(levels) - 1), desc="RF-Inversion (invert)", disable=not progress, leave=False):
        s, s_next = levels[i], levels[i + 1]
        (v,) = guided_predictions(pipe, _timestep(pipe, s), [(y, prompt, guidance)])
        conditional = (y1 - y) / (1 - s)  # s < 1 on every step taken
        y = y + (s_next - s) * (v + gamma * (conditional - v))
    return y


@torch.no_grad()
def rf_inversion_latents(pipe, x0: torch.Tensor, source: PromptCond, target: PromptCond,
                         options: RFInversionOptions = RFInversionOptions(), generator: torch.Generator | None = None,
                         progress: bool = True) -> torch.Tensor:
    """The edited latent [1, C, h, w] for the source latent x0: controlled inversion, then controlled sampling."""
    timesteps, sigmas = flow_schedule(pipe, options.steps, x0)
    y1 = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    prompt = null_prompt(source) if options.invert_with == "null" else source
    x = rf_invert(pipe, x0, prompt, options.source_guidance, options.gamma, sigmas, y1, progress)
    eta_steps = options.eta_steps
    for i in progress_bar(range(options.steps), desc="RF-Inversion (edit)", disable=not progress, leave=False):
        s = sigmas[i]
        (v,) = guided_predictions(pipe, timesteps[i], [(x, target, options.target_guidance)])
        eta = options.eta if i in eta_steps else 0.0
        if eta:
            v = v + eta * ((x - x0) / s - v)  # s > 0 on every step taken
        x = x + (sigmas[i + 1] - s) * v
    return x
