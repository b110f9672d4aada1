"""FlowEdit (Kulikov et al. 2024): inversion-free text-guided editing with a flow-matching model (SD3).

    from agsm.editing import edit
    edited = edit(pipe, image, "a red circle", "a blue circle")   # an SD3 pipeline -> FlowEdit

The edit follows an ODE in latent space that starts at the source latent x0_src. At each chosen noise
level s, fresh noise eps gives a noisy source z_src = (1 - s) x0_src + s eps and its counterpart on
the edit path z_tar = z_edit + z_src - x0_src; the edit moves by the difference of the two guided
velocities, v(z_tar, target) - v(z_src, source), averaged over n_avg draws. Nothing is inverted: where
the prompts agree the two velocities cancel, so what the target prompt does not ask to change stays put.
Only the last n_max of the steps run (50 steps, n_max 33: the edit starts at step 18; by default n_max
scales with the step count); the final n_min
steps instead sample the target directly from the edit path's noisy point.

With soft tokens installed, `tokens_on="both"` (default) lets them into every prediction; `"target"` keeps
them out of the source branch v(z_src, source), so the velocity difference also carries the tokens' own
effect; `"cond"` keeps them out of both unconditional branches, so guidance amplifies their effect
(docs/editing.md, "Why tokens hurt FlowEdit", measures all three).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .conditioning import PromptCond, guided_predictions
from .prompt_mix import null_prompt
from .token_scope import check_tokens_on, tokens_off


@dataclass(frozen=True)
class FlowEditOptions:
    """The paper's defaults (docs/method.md, Editing): 50 steps, the last 33 edited, CFG 3.5 / 13.5."""

    steps: int = 50
    n_max: int | None = None   # steps that edit (the first steps - n_max are skipped); None: 33/50 of steps
    n_min: int = 0             # of those, the last n_min sample the target directly
    n_avg: int = 1             # noise draws averaged per step
    source_guidance: float = 3.5
    target_guidance: float = 13.5
    tokens_on: str = "both"    # installed soft tokens: "both" trajectories, "target" only, "cond" branches only

    def __post_init__(self) -> None:
        if self.n_max is None and isinstance(self.steps, int):  # the paper's 33 of 50, scaled to the step count
            object.__setattr__(self, "n_max", max(1, round(self.steps * 33 / 50)))
        for name in ("steps", "n_max", "n_avg"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"FlowEdit option {name}={getattr(self, name)!r} must be an integer >= 1")
        if self.n_max > self.steps:
            raise ValueError(f"FlowEdit n_max={self.n_max} exceeds steps={self.steps}: the edit would start "
                             f"before the first step; use n_max <= steps (start step = steps - n_max + 1)")
        if not isinstance(self.n_min, int) or not 0 <= self.n_min <= self.n_max:
            raise ValueError(f"FlowEdit n_min={self.n_min!r} must be an integer in [0, n_max={self.n_max}]")
        for name in ("source_guidance", "target_guidance"):
            if getattr(self, name) < 1:
                raise ValueError(f"FlowEdit {name}={getattr(self, name)} must be >= 1 (1 = no guidance)")
        check_tokens_on("FlowEdit", self.tokens_on)

    @property
    def start_step(self) -> int:
        """1-based index of the first step that runs."""
        return self.steps - self.n_max + 1


def flow_schedule(pipe, steps: int, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(timesteps [steps], sigmas [steps + 1]) from a copy of the pipeline's scheduler, its shift included."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    if not hasattr(scheduler, "sigmas") or "shift" not in scheduler.config:
        raise ValueError(f"FlowEdit needs a flow-matching scheduler, got {type(pipe.scheduler).__name__}; "
                         "use it with an SD3 pipeline")
    kwargs = {}
    if scheduler.config.get("use_dynamic_shifting"):  # resolution-dependent shift, as the SD3 pipeline computes it
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        patch = pipe.transformer.config.patch_size
        seq_len = (latents.shape[-2] // patch) * (latents.shape[-1] // patch)
        c = scheduler.config
        kwargs["mu"] = calculate_shift(seq_len, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                       c.get("base_shift", 0.5), c.get("max_shift", 1.16))
    scheduler.set_timesteps(steps, device=latents.device, **kwargs)
    return scheduler.timesteps, scheduler.sigmas.to(latents.device, latents.dtype)


@torch.no_grad()
def flowedit_latents(pipe, x0_src: torch.Tensor, source: PromptCond, target: PromptCond,
                     options: FlowEditOptions = FlowEditOptions(), generator: torch.Generator | None = None,
                     progress: bool = True) -> torch.Tensor:
    """The edited latent [1, C, h, w] for the source latent x0_src."""
    timesteps, sigmas = flow_schedule(pipe, options.steps, x0_src)
    first, sample_from = options.steps - options.n_max, options.steps - options.n_min
    noise = lambda: torch.randn(x0_src.shape, generator=generator, dtype=x0_src.dtype).to(x0_src.device)  # noqa: E731
    z_edit, z_tar = x0_src.clone(), None
    for i in progress_bar(range(first, options.steps), desc="FlowEdit", disable=not progress, leave=False):
        s, ds = sigmas[i], sigmas[i + 1] - sigmas[i]
        if i < sample_from:
            delta = torch.zeros_like(x0_src)
            for _ in range(options.n_avg):
                z_src = (1 - s) * x0_src + s * noise()
                z_on_edit = z_edit + z_src - x0_src
                v_src, v_tar = _velocities(pipe, timesteps[i], (z_src, source, options.source_guidance),
                                           (z_on_edit, target, options.target_guidance), options.tokens_on)
                delta += (v_tar - v_src) / options.n_avg
            z_edit = z_edit + ds * delta
        else:
            if z_tar is None:  # leave the edit path at its noisy point and sample the target from there
                z_tar = z_edit + s * (noise() - x0_src)
            request = [(z_tar, target, options.target_guidance)]
            guided = _stock_unconditional if options.tokens_on == "cond" else guided_predictions
            (v_tar,) = guided(pipe, timesteps[i], request)
            z_tar = z_tar + ds * v_tar
    return z_edit if z_tar is None else z_tar


def _velocities(pipe, t, source_request, target_request, tokens_on: str):
    """(v_src, v_tar): one batched forward, or two when some predictions must run without tokens."""
    if tokens_on == "both":
        return guided_predictions(pipe, t, [source_request, target_request])
    if tokens_on == "cond":
        return _stock_unconditional(pipe, t, [source_request, target_request])
    with tokens_off(pipe):
        (v_src,) = guided_predictions(pipe, t, [source_request])
    (v_tar,) = guided_predictions(pipe, t, [target_request])
    return v_src, v_tar


def _stock_unconditional(pipe, t, requests):
    """guided_predictions with tokens in the conditional predictions only: the unconditional ones (the empty
    prompt) run with the tokens switched off, and the guidance is combined here."""
    cond = guided_predictions(pipe, t, [(z, prompt, 1.0) for z, prompt, _ in requests])
    if all(w == 1.0 for _, _, w in requests):
        return cond
    with tokens_off(pipe):
        uncond = guided_predictions(pipe, t, [(z, null_prompt(prompt), 1.0) for z, prompt, _ in requests])
    return [u + w * (c - u) for u, c, (_, _, w) in zip(uncond, cond, requests)]
