"""SPO (Liang et al., arXiv 2406.04314, first titled "Step-aware Preference Optimization: Aligning Preference with
Denoising Performance at Each Step"; CVPR 2025 as "Aesthetic Post-Training Diffusion Models from Generic Preferences
with Step-by-step Preference Optimization"): preferences judged at each denoising step, not only on final images.

At a DDIM step t of the model's own sampling (eta > 0, so a step is a Gaussian with a density), k candidates
x_{t-1} are drawn from the same x_t; a step-aware preference model scores each candidate (here: the image the model
predicts from it at the next step, decoded, scored by preference/scorers.py; the exact judge on ShapesWorld). The best
and the worst form a pair when their scores differ enough (softmax([s_best, s_worst]) differ by more than a threshold,
0.3). The loss is DPO's on the per-step log-probabilities, with the probability ratio clipped:
    r = clip(p_theta(x_{t-1} | x_t) / p_ref(x_{t-1} | x_t), 1 - eps, 1 + eps)
    L = -log sigmoid(beta log r_w - beta log r_l)                        (beta = 10, eps = 0.1)
where p(x_{t-1} | x_t) = N(mu(x_t, eps_hat), sigma_t^2) is the DDIM step (Song et al. 2021, Eqs. 12 and 16):
    x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t),  mu = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma_t^2) eps_hat,
    sigma_t = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)),
the log-density averaged over the latent's elements, and eps_hat guided by classifier-free guidance, as the candidates
were drawn (the public code's defaults: 20 steps, eta 1, guidance 5, 4 candidates, ranked from step 4 on).

One training step draws one trajectory per prompt up to a step drawn uniformly from [divert_start, steps), ranks that
step's candidates and takes one optimiser step on the pairs it gives (the public code collects every step's pairs of a
trajectory and trains on them in minibatches; one ranked step per trajectory keeps a step's cost bounded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..backbones.base import TextCond
from .options import MethodOptions, check, method_name
from .registry import MethodSpec, register


@dataclass
class SpoOptions(MethodOptions):
    """`method` when method.name is spo (defaults: the public SD1.5 config)."""

    name: str = method_name("spo")
    steps: int = field(default=20, metadata={"help": "DDIM sampling steps of the trajectories (public 20)"})
    eta: float = field(default=1.0, metadata={
        "help": "DDIM eta of the sampling (1: DDPM-like, the public setting; > 0 so steps have a density)"})
    guidance: float = field(default=5.0, metadata={
        "help": "classifier-free guidance of the sampling and of the trained log-probabilities (public 5)"})
    candidates: int = field(default=4, metadata={
        "help": "candidate x_{t-1} drawn from the same x_t (public SD1.5 config 4)"})
    divert_start: int = field(default=4, metadata={
        "help": "the first sampling step whose candidates are ranked (public 4): the ranked step is drawn uniformly "
                "from [divert_start, steps)"})
    threshold: float = field(default=0.3, metadata={
        "help": "a best/worst pair counts when softmax([s_best, s_worst]) differs by more than this (public 0.3)"})
    beta: float = field(default=10.0, metadata={"help": "beta of the DPO-style loss (public 10)"})
    clip: float = field(default=0.1, metadata={
        "help": "the probability ratio p_theta / p_ref is clipped to [1 - clip, 1 + clip] (public 0.1)"})
    scorer: str = field(default="shapes_judge", metadata={
        "help": "the step-aware scorer of the candidates' predicted images: shapes_judge (ShapesWorld's exact judge) "
                "or module.path:name of a callable (images, prompts, t) -> scores"})

    def __post_init__(self):
        super().__post_init__()
        check(self.beta > 0, f"method.beta {self.beta} must be > 0")
        check(self.steps >= 1, f"method.steps {self.steps} must be >= 1")
        check(self.guidance >= 0, f"method.guidance {self.guidance} must be >= 0")
        # softmax([s_best, s_worst]) differ by less than 1: a threshold of 1 or more would never form a pair
        check(0 <= self.threshold < 1, f"method.threshold {self.threshold} must be in [0, 1)")
        check(self.eta > 0, f"method.eta {self.eta} must be > 0 (SPO needs stochastic steps)")
        check(self.candidates >= 2, f"method.candidates {self.candidates} must be >= 2")
        check(0 <= self.divert_start < self.steps,
              f"method.divert_start {self.divert_start} must be in [0, steps {self.steps})")
        check(0 < self.clip < 1, f"method.clip {self.clip} must be in (0, 1)")


def ddim_step_std(abar_t: float, abar_prev: float, eta: float) -> float:
    """sigma_t = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)) (DDIM Eq. 16)."""
    return eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5


def ddim_step_mean(x_t: torch.Tensor, eps: torch.Tensor, abar_t: float, abar_prev: float, std: float) -> torch.Tensor:
    """mu = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps, x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)."""
    x0_hat = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5
    return abar_prev ** 0.5 * x0_hat + (1 - abar_prev - std ** 2) ** 0.5 * eps


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; mean, std^2) per element, averaged over all but the first dim: [B]."""
    per_element = -(x.float() - mean.float()) ** 2 / (2 * std ** 2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return per_element.flatten(1).mean(1)


def rank_candidates(scores: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """scores [k, B] -> (best [B], worst [B], valid [B]): the candidates with the highest and lowest score (the first
    of equals as best, the last as worst), valid when softmax([s_best, s_worst]) differ by more than `threshold`."""
    order = torch.sort(scores, dim=0, descending=True, stable=True).indices
    best, worst = order[0], order[-1]
    columns = torch.arange(scores.shape[1])
    pair = torch.stack([scores[best, columns], scores[worst, columns]]).float().softmax(0)
    return best, worst, pair[0] - pair[1] > threshold


def spo_loss(logp_w: torch.Tensor, ref_logp_w: torch.Tensor, logp_l: torch.Tensor, ref_logp_l: torch.Tensor,
             beta: float, clip: float) -> torch.Tensor:
    """Per pair -log sigmoid(beta log r_w - beta log r_l), r = clip(exp(logp - ref_logp), 1 - clip, 1 + clip)."""
    r_w = torch.clamp(torch.exp(logp_w - ref_logp_w), 1 - clip, 1 + clip)
    r_l = torch.clamp(torch.exp(logp_l - ref_logp_l), 1 - clip, 1 + clip)
    return -F.logsigmoid(beta * torch.log(r_w) - beta * torch.log(r_l))


@dataclass
class StepPairs:
    """The ranked step of a batch: x_t at timestep t, the DDIM step's alphas and std, each valid prompt's preferred and
    dispreferred candidate x_{t-1}, and which prompts (rows of the batch) gave a pair."""

    x_t: torch.Tensor
    t: int
    abar_t: float
    abar_prev: float
    std: float
    x_w: torch.Tensor
    x_l: torch.Tensor
    rows: torch.Tensor


def spo_pairs(denoiser, batch, config, generator: torch.Generator) -> tuple[StepPairs, dict]:
    """Sample each prompt's trajectory (no gradient) to a step drawn from [divert_start, steps), draw k candidates
    there and rank them with the scorer: the pairs of one SPO step, and what to log about them."""
    schedule = denoiser.ddim_schedule(config.steps)  # [(t, a_t, a_prev)], from noise to image
    b, k, g, eta = batch.num_prompts, config.candidates, config.guidance, config.eta
    ranked = int(torch.randint(config.divert_start, len(schedule), (1,), generator=generator))
    cond, uncond = batch.cond, denoiser.uncond(b)
    with torch.no_grad():
        x = denoiser.initial_noise(b, generator)
        for t, a_t, a_prev in schedule[:ranked]:
            std = ddim_step_std(a_t, a_prev, eta)
            mean = ddim_step_mean(x, denoiser.guided_eps(x, t, cond, uncond, g), a_t, a_prev, std)
            x = mean + std * _noise(mean.shape, generator, mean)
        t, a_t, a_prev = schedule[ranked]
        std = ddim_step_std(a_t, a_prev, eta)
        mean = ddim_step_mean(x, denoiser.guided_eps(x, t, cond, uncond, g), a_t, a_prev, std)
        candidates = mean[None] + std * _noise((k, *mean.shape), generator, mean)  # [k, B, C, h, w]
        scores = _score(denoiser, candidates, schedule, ranked, batch.texts, cond, uncond, g)  # [k, B]
        best, worst, valid = rank_candidates(scores.cpu(), config.threshold)
    rows = valid.nonzero().flatten()
    on = rows.to(x.device)
    pairs = StepPairs(x[on], t, a_t, a_prev, std, candidates[best[rows].to(x.device), on],
                      candidates[worst[rows].to(x.device), on], rows)
    return pairs, {"pairs": valid.float().sum(), "ranked_step": torch.tensor(float(ranked)),
                   "score_mean": scores.mean()}


def spo_pair_loss(denoiser, pairs: StepPairs, cond: TextCond, config) -> tuple[torch.Tensor, dict]:
    """The clipped DPO loss on the pairs' per-step log-probabilities, policy (with gradient) against reference; cond
    is the whole batch's conditioning (the pairs' rows are taken from it)."""
    rows = pairs.rows.to(cond.embeds.device)
    cond_v, uncond_v, g = cond[rows], denoiser.uncond(len(pairs.rows)), config.guidance
    eps = denoiser.guided_eps(pairs.x_t, pairs.t, cond_v, uncond_v, g)
    mean_policy = ddim_step_mean(pairs.x_t, eps, pairs.abar_t, pairs.abar_prev, pairs.std)
    with torch.no_grad():
        eps_ref = denoiser.guided_eps(pairs.x_t, pairs.t, cond_v, uncond_v, g, model="reference")
        mean_ref = ddim_step_mean(pairs.x_t, eps_ref, pairs.abar_t, pairs.abar_prev, pairs.std)
    logp_w, logp_l = gaussian_log_prob(pairs.x_w, mean_policy, pairs.std), gaussian_log_prob(pairs.x_l, mean_policy,
                                                                                                pairs.std)
    ref_w, ref_l = gaussian_log_prob(pairs.x_w, mean_ref, pairs.std), gaussian_log_prob(pairs.x_l, mean_ref, pairs.std)
    losses = spo_loss(logp_w, ref_w, logp_l, ref_l, config.beta, config.clip)
    return losses.mean(), {"ratio_w": torch.exp(logp_w - ref_w).mean().detach(),
                           "ratio_l": torch.exp(logp_l - ref_l).mean().detach()}


def ddim_sampling_schedule(scheduler, steps: int) -> list[tuple[int, float, float]]:
    """[(t, abar_t, abar_prev)] of DDIM sampling in `steps` steps with a diffusers DDIMScheduler, from noise to image
    (the last step goes to the scheduler's final alpha)."""
    scheduler.set_timesteps(steps)
    abar = scheduler.alphas_cumprod.float()
    ratio = scheduler.config.num_train_timesteps // steps
    return [(int(t), float(abar[t]), float(abar[t - ratio]) if t - ratio >= 0 else float(scheduler.final_alpha_cumprod))
            for t in scheduler.timesteps.tolist()]


def spo_step(denoiser, batch, config, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One SPO loss on a PromptBatch: sample, rank one step's candidates with the scorer, DPO on their densities."""
    pairs, logs = spo_pairs(denoiser, batch, config, generator)
    if len(pairs.rows) == 0:
        return denoiser.zero_loss(), logs  # no pair: an optimiser step that moves nothing but AdamW's state
    loss, more = spo_pair_loss(denoiser, pairs, batch.cond, config)
    return loss, {**logs, **more}


def _noise(shape, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(like.device, like.dtype)


def _score(denoiser, candidates: torch.Tensor, schedule, ranked: int, texts: list[str], cond: TextCond,
           uncond: TextCond, guidance: float) -> torch.Tensor:
    """[k, B] scores of the images the candidates lead to: the model's x0 prediction from each at the next step's
    timestep (the last step's candidates are the images themselves), decoded and scored at that timestep."""
    k, b = candidates.shape[:2]
    flat = candidates.flatten(0, 1)  # [k B, ...]: candidate c of prompt i at row c B + i
    if ranked + 1 < len(schedule):
        t_next, a_next, _ = schedule[ranked + 1]
        eps = denoiser.guided_eps(flat, t_next, TextCond.cat([cond] * k), TextCond.cat([uncond] * k), guidance)
        x0_hat, at = (flat - (1 - a_next) ** 0.5 * eps) / a_next ** 0.5, t_next
    else:
        x0_hat, at = flat, 0
    images = denoiser.decode(x0_hat)
    scores = denoiser.scorer(images, list(texts) * k, torch.full((k * b,), at))
    return torch.as_tensor(scores, dtype=torch.float32).reshape(k, b)


register(MethodSpec("spo", SpoOptions, spo_step, data="prompts", trains="backbone",
                    unet_only="runs DDIM (inversion or sampling)",
                    batch_coupling="one ranked sampling step per batch, and the mean over the pairs that batch forms",
                    about="SPO (Liang et al.): the backbone, on its own samples ranked at each step by a scorer"))
