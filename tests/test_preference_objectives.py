"""Diffusion-DPO, InPO and SPO: each loss against an independent transcription of its paper's formula, and each
lowering its loss on a fixed batch of a tiny model."""
import math

import pytest
import torch
import torch.nn.functional as F
from preference_helpers import brightness, pair_batch, prompt_batch, tuned

from agsm.objectives.dpo import diffusion_dpo_loss, dpo_step
from agsm.objectives.inpo import ddim_inversion_step, inpo_step, inversion_noise_target, inversion_schedule
from agsm.objectives.spo import (ddim_step_mean, ddim_step_std, gaussian_log_prob, rank_candidates, spo_loss,
                                 spo_pair_loss, spo_pairs)


def test_dpo_loss_matches_hand_computation():
    err_w, err_l = torch.tensor([0.30, 0.10]), torch.tensor([0.20, 0.40])
    ref_w, ref_l = torch.tensor([0.25, 0.12]), torch.tensor([0.22, 0.35])
    beta = 50.0
    for i in range(2):
        inside = -beta / 2 * ((err_w[i] - ref_w[i]) - (err_l[i] - ref_l[i]))
        expected = -math.log(1 / (1 + math.exp(-float(inside))))
        assert abs(diffusion_dpo_loss(err_w, err_l, ref_w, ref_l, beta)[i].item() - expected) < 1e-5
    # improving on the winner relative to the reference lowers the loss; on the loser raises it
    assert diffusion_dpo_loss(err_w - 0.01, err_l, ref_w, ref_l, beta).sum() < diffusion_dpo_loss(
        err_w, err_l, ref_w, ref_l, beta).sum()


def _unet_eps(unet, x, t, cond):
    return unet(x, t, encoder_hidden_states=cond.embeds).sample


def test_dpo_step_is_the_papers_formula(sd15_dir):
    """Wallace et al. Eq. 14 with T w(lambda_t) folded into beta, written out with the raw UNets: the policy (LoRA on)
    and a reference UNet loaded afresh from disk; x_t from diffusers' DDPMScheduler.add_noise."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    config, backbone, trainable = tuned(sd15_dir, method="dpo", beta=200.0)
    batch = pair_batch(backbone)
    loss, _ = dpo_step(trainable.denoiser, batch, config.method, torch.Generator().manual_seed(5))

    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (2,), generator=g)
    eps = torch.randn(batch.x0_w.shape, generator=g)
    scheduler = DDPMScheduler.from_pretrained(sd15_dir, subfolder="scheduler")
    reference = UNet2DConditionModel.from_pretrained(sd15_dir, subfolder="unet")
    with torch.no_grad():
        terms = []
        for x0 in (batch.x0_w, batch.x0_l):
            x_t = scheduler.add_noise(x0, eps, t)
            mine = (_unet_eps(backbone.denoiser, x_t, t, batch.cond) - eps).pow(2).mean((1, 2, 3))
            ref = (_unet_eps(reference, x_t, t, batch.cond) - eps).pow(2).mean((1, 2, 3))
            terms.append(mine - ref)
        expected = -F.logsigmoid(-200.0 / 2 * (terms[0] - terms[1])).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-6)


def _lowers(step, config, trainable, batch, steps=8, lr=1e-2, seed=3):
    """The step's loss with fixed draws (seed) before and after `steps` AdamW steps on it."""
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=lr, weight_decay=0.0)

    def loss_now():
        return step(trainable.denoiser, batch, config.method, torch.Generator().manual_seed(seed))[0]

    with torch.no_grad():
        before = loss_now().item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_now().backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_now().item()
    return before, after


@pytest.mark.parametrize("params", ["lora", "full"])
def test_dpo_lowers_its_loss_on_a_fixed_batch(sd15_dir, params):
    config, backbone, trainable = tuned(sd15_dir, params=params, method="dpo", beta=500.0)
    before, after = _lowers(dpo_step, config, trainable, pair_batch(backbone), lr=1e-2 if params == "lora" else 1e-4)
    assert after < before - 0.01, (before, after)


def test_inversion_step_is_diffusers_ddim_inverse_step(sd15_dir):
    """Our grid and step against diffusers' DDIMInverseScheduler.step, on the fixture's scheduler config."""
    from diffusers import DDIMInverseScheduler

    config = DDIMInverseScheduler.load_config(sd15_dir, subfolder="scheduler")
    theirs = DDIMInverseScheduler.from_config(config)
    theirs.set_timesteps(10)
    schedule = inversion_schedule(DDIMInverseScheduler.from_config(config), 10)
    assert [s.t for s in schedule] == theirs.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ours = x.clone()
    for step, t in zip(schedule, theirs.timesteps):
        eps = torch.tanh(x) * 0.5 + 0.1 * torch.randn(x.shape, generator=g)  # any eps function
        x = theirs.step(eps, t, x).prev_sample
        ours = ddim_inversion_step(ours, eps, step.abar_from, step.abar_to)
        torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_inpo_step_is_the_papers_formula(sd15_dir):
    """InPO with the deterministic inversion, written out as the public code runs it: diffusers' DDIMInverseScheduler
    through the grid timesteps below t with the policy UNet, eps re-derived at t, then Diffusion-DPO."""
    from diffusers import DDIMInverseScheduler, UNet2DConditionModel

    config, backbone, trainable = tuned(sd15_dir, method="inpo", beta=200.0, inversion_eta=0.0,
                                        inversion_steps=5)
    batch = pair_batch(backbone)
    loss, _ = inpo_step(trainable.denoiser, batch, config.method, torch.Generator().manual_seed(11))

    t = torch.randint(0, 1000, (2,), generator=torch.Generator().manual_seed(11))
    inverse = DDIMInverseScheduler.from_pretrained(sd15_dir, subfolder="scheduler")
    inverse.set_timesteps(5)
    reference = UNet2DConditionModel.from_pretrained(sd15_dir, subfolder="unet")
    abar = inverse.alphas_cumprod
    with torch.no_grad():
        terms = []
        for x0 in (batch.x0_w, batch.x0_l):
            errors = []
            for i in range(2):  # one pair at a time, as the public code (batch size 1 per device) does
                cond = type(batch.cond)(batch.cond.embeds[i:i + 1])
                x = x0[i:i + 1].clone()
                for step_t in inverse.timesteps[inverse.timesteps < t[i]]:
                    x = inverse.step(_unet_eps(backbone.denoiser, x, step_t.reshape(1), cond), step_t, x).prev_sample
                eps = (x - abar[t[i]].sqrt() * x0[i:i + 1]) / (1 - abar[t[i]]).sqrt()
                mine = (_unet_eps(backbone.denoiser, x, t[i:i + 1], cond) - eps).pow(2).mean()
                ref = (_unet_eps(reference, x, t[i:i + 1], cond) - eps).pow(2).mean()
                errors.append(mine - ref)
            terms.append(torch.stack(errors))
        expected = -F.logsigmoid(-200.0 / 2 * (terms[0] - terms[1])).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)


def test_inversion_noise_target_rebuilds_x_t():
    x0, x_t, abar = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.tensor([0.9, 0.5, 0.1])
    eps = inversion_noise_target(x_t, x0, abar)
    a = abar.reshape(-1, 1, 1, 1)
    torch.testing.assert_close(a.sqrt() * x0 + (1 - a).sqrt() * eps, x_t)


def test_inpo_lowers_its_loss_on_a_fixed_batch(sd15_dir):
    config, backbone, trainable = tuned(sd15_dir, method="inpo", beta=500.0, invert_with="reference",
                                        inversion_steps=5)
    before, after = _lowers(inpo_step, config, trainable, pair_batch(backbone))
    assert after < before - 0.01, (before, after)


def test_ddim_step_density_is_diffusers_ddim_step():
    """mu and sigma of our DDIM step against diffusers' DDIMScheduler.step with eta 1 (zero noise gives mu), and the
    log-density against torch.distributions.Normal."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
                              clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    t, prev = 501, 451
    abar_t, abar_prev = float(scheduler.alphas_cumprod[t]), float(scheduler.alphas_cumprod[prev])
    std = ddim_step_std(abar_t, abar_prev, 1.0)
    assert std == pytest.approx(float(scheduler._get_variance(t, prev)) ** 0.5, rel=1e-5)
    mean = scheduler.step(eps, t, x_t, eta=1.0, variance_noise=torch.zeros_like(x_t)).prev_sample
    torch.testing.assert_close(ddim_step_mean(x_t, eps, abar_t, abar_prev, std), mean, rtol=1e-5, atol=1e-5)
    x = mean + std * torch.randn(mean.shape, generator=g)
    expected = torch.distributions.Normal(mean, std).log_prob(x).flatten(1).mean(1)
    torch.testing.assert_close(gaussian_log_prob(x, mean, std), expected, rtol=1e-5, atol=1e-5)


def test_spo_loss_and_ranking_match_hand_computation():
    logp_w, ref_w = torch.tensor([0.05, -0.30]), torch.tensor([0.0, 0.0])
    logp_l, ref_l = torch.tensor([-0.02, 0.01]), torch.tensor([0.0, 0.0])
    got = spo_loss(logp_w, ref_w, logp_l, ref_l, beta=10.0, clip=0.1)
    for i in range(2):
        r_w = min(max(math.exp(logp_w[i] - ref_w[i]), 0.9), 1.1)
        r_l = min(max(math.exp(logp_l[i] - ref_l[i]), 0.9), 1.1)
        z = 10 * math.log(r_w) - 10 * math.log(r_l)
        assert abs(got[i].item() + math.log(1 / (1 + math.exp(-z)))) < 1e-5
    scores = torch.tensor([[1.0, 0.0, 0.2], [0.0, 0.0, 0.9], [1.0, 0.0, 0.0]])  # [k=3, B=3]
    best, worst, valid = rank_candidates(scores, threshold=0.3)
    assert best.tolist() == [0, 0, 1] and worst.tolist() == [1, 2, 2]  # stable: the first (last) of equals
    assert valid.tolist() == [True, False, True]  # all equal: a tie; 0.9 vs 0: softmax gap 0.42 > 0.3


def test_spo_ranks_candidates_and_lowers_its_loss(sd15_dir):
    """On the pairs one SPO step ranks (a brightness scorer standing in for the step-aware model), the clipped DPO
    loss starts at log 2 (policy = reference up to the small LoRA) and falls as the LoRA trains."""
    config, backbone, trainable = tuned(sd15_dir, method="spo", steps=6, divert_start=2, guidance=3.0)
    with torch.no_grad():
        for name, p in trainable.named_parameters():
            if "lora_B" in name:
                p.zero_()  # the policy starts as the reference: ratios 1
    trainable.denoiser._scorer = brightness
    batch = prompt_batch(backbone, b=3)
    pairs, logs = spo_pairs(trainable.denoiser, batch, config.method, torch.Generator().manual_seed(2))
    assert len(pairs.rows) == logs["pairs"] > 0
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss, _ = spo_pair_loss(trainable.denoiser, pairs, batch.cond, config.method)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert losses[-1] < losses[0] - 0.01, losses


def test_spo_step_ratio_is_the_papers(sd15_dir):
    """The policy's log-probability ratio in the loss is the DDIM step density written out with the raw UNets."""
    from diffusers import UNet2DConditionModel

    config, backbone, trainable = tuned(sd15_dir, method="spo", steps=6, divert_start=2, guidance=3.0)
    trainable.denoiser._scorer = brightness
    batch = prompt_batch(backbone, b=3)
    pairs, _ = spo_pairs(trainable.denoiser, batch, config.method, torch.Generator().manual_seed(2))
    loss, _ = spo_pair_loss(trainable.denoiser, pairs, batch.cond, config.method)
    reference = UNet2DConditionModel.from_pretrained(sd15_dir, subfolder="unet")
    uncond = backbone.encode_text([""]).embeds
    rows = pairs.rows

    def mean_of(unet):
        x = torch.cat([pairs.x_t, pairs.x_t])
        context = torch.cat([uncond.expand(len(rows), -1, -1), batch.cond.embeds[rows]])
        e_u, e_c = unet(x, torch.full((2 * len(rows),), pairs.t), encoder_hidden_states=context).sample.chunk(2)
        eps = e_u + 3.0 * (e_c - e_u)
        x0 = (pairs.x_t - (1 - pairs.abar_t) ** 0.5 * eps) / pairs.abar_t ** 0.5
        return pairs.abar_prev ** 0.5 * x0 + (1 - pairs.abar_prev - pairs.std ** 2) ** 0.5 * eps

    with torch.no_grad():
        mine, ref = mean_of(backbone.denoiser), mean_of(reference)
        normal = lambda m, x: torch.distributions.Normal(m, pairs.std).log_prob(x).flatten(1).mean(1)  # noqa: E731
        r_w = torch.clamp(torch.exp(normal(mine, pairs.x_w) - normal(ref, pairs.x_w)), 0.9, 1.1)
        r_l = torch.clamp(torch.exp(normal(mine, pairs.x_l) - normal(ref, pairs.x_l)), 0.9, 1.1)
        expected = -torch.log(torch.sigmoid(10 * torch.log(r_w) - 10 * torch.log(r_l))).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
