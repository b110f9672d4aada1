"""FlowAlign (Kim, Hong and Ye 2025, "FlowAlign: trajectory-regularized, inversion-free flow-based image
editing"): FlowEdit's inversion-free ODE plus a flow-matching term that keeps the edit's clean estimate on the
source's.

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle", method="flowalign")

Per step at noise level s (SD3 convention x_s = (1 - s) x0 + s eps, v = dx/ds), with fresh noise eps:
    q = (1 - s) x_src + s eps              the source's noisy point
    p = x + q - x_src                      its counterpart on the edit path x (x starts at x_src)
    v_q = v(q, source)                     source velocity, conditional only (no guidance)
    v_p = v(p, source) + w (v(p, target) - v(p, source))
                                           target velocity, guided with the SOURCE prompt as the negative
    x <- x + (s_next - s)(v_p - v_q) + zeta [(q - s v_q) - (p - s v_p)]
The first term is FlowEdit's velocity difference; the second is the step of the paper's flow-matching
(trajectory) regulariser: (z - s v) is the clean image a velocity predicts from z, so it pulls the edit's
predicted clean image towards the source's (it is not scaled by the step size). Equal prompts give v_p = v_q
and p = q on every step: the source comes back exactly, whatever w and zeta.

Defaults are the official implementation's (github.com/FlowAlign/FlowAlign, `run_edit.py` and
`sd3_edit.py`; SD3 medium): 33 steps, all run (from s = 1), w = 13.5, zeta = 0.01. zeta is added once per
step, not per unit of s: at another step count N, zeta = 0.01 x 33 / N keeps the regulariser's total pull
(e.g. `--steps 20 --option zeta=0.0165`). With zeta = 0 and w = 1 the update is FlowEdit's with guidance
1 / 1 and n_max = steps (the test checks this).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions
from .flowedit import flow_schedule
from .prompt_mix import against

PAPER_STEPS, PAPER_ZETA = 33, 0.01


@dataclass(frozen=True)
class FlowAlignOptions:
    """The official defaults: 33 steps, all edited, target CFG 13.5 against the source prompt, zeta 0.01."""

    steps: int = PAPER_STEPS
    n_max: int | None = None          # steps that edit (the last n_max); None: all, as the official code
    target_guidance: float = 13.5     # w: CFG of the target prompt, the source prompt as the negative
    source_guidance: float = 1.0      # CFG of the source velocity v_q; 1 = the paper's conditional prediction
    zeta: float = PAPER_ZETA          # regulariser weight per step (the paper's at 33 steps)

    def __post_init__(self) -> None:
        if self.n_max is None and isinstance(self.steps, int):
            object.__setattr__(self, "n_max", self.steps)
        for name in ("steps", "n_max"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"FlowAlign option {name}={getattr(self, name)!r} must be an integer >= 1")
        if self.n_max > self.steps:
            raise ValueError(f"FlowAlign n_max={self.n_max} exceeds steps={self.steps}; use n_max <= steps")
        for name in ("source_guidance", "target_guidance"):
            if getattr(self, name) < 1:
                raise ValueError(f"FlowAlign {name}={getattr(self, name)} must be >= 1 (1 = no guidance)")
        if not 0 <= self.zeta < 1:
            raise ValueError(f"FlowAlign zeta={self.zeta} must be in [0, 1) (the paper's 0.01 at 33 steps; 0 = "
                             "FlowEdit's update)")


@torch.no_grad()
def flowalign_latents(pipe, x_src: torch.Tensor, source: PromptCond, target: PromptCond,
                      options: FlowAlignOptions = FlowAlignOptions(), generator: torch.Generator | None = None,
                      progress: bool = True) -> torch.Tensor:
    """The edited latent [1, C, h, w] for the source latent x_src."""
    timesteps, sigmas = flow_schedule(pipe, options.steps, x_src)
    towards_target = against(source, target)  # CFG from source to target
    x = x_src.clone()
    for i in progress_bar(range(options.steps - options.n_max, options.steps), desc="FlowAlign", disable=not progress,
                  leave=False):
        s, ds = sigmas[i], sigmas[i + 1] - sigmas[i]
        # One noise draw per step, as FlowEdit's (n_avg = 1), so both methods see the same noise from a seed.
        eps = torch.randn(x_src.shape, generator=generator, dtype=x_src.dtype).to(x_src.device)
        q = (1 - s) * x_src + s * eps
        p = x + q - x_src
        v_q, v_p = guided_predictions(pipe, timesteps[i], [(q, source, options.source_guidance),
                                                          (p, towards_target, options.target_guidance)])
        x = x + ds * (v_p - v_q) + options.zeta * ((q - s * v_q) - (p - s * v_p))
    return x
