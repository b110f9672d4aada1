"""The pure objective math against direct hand computations."""
import math

import torch

from agsm.objectives import agsm_targets, softrepa_loss


def test_agsm_targets_match_hand_computation():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 1, 2, 1, generator=g)
    ema = torch.randn(2, 3, 1, 2, 1, generator=g)
    pos = torch.tensor([0, 2])
    targets, weights = agsm_targets(y, ema, pos, gamma_pos=1.0, gamma_neg=0.5, temperature=0.1)
    for i in range(2):
        rewards = [-((ema[i, k] - y[i]) ** 2).mean().item() for k in range(3)]
        z = sum(math.exp(r / 0.1) for r in rewards)
        w = [math.exp(r / 0.1) / z for r in rewards]
        mean_pred = sum(w[k] * ema[i, k] for k in range(3))
        for k in range(3):
            d = ema[i, k] - mean_pred
            expected = y[i] + 1.0 * d if k == pos[i] else y[i] - 0.5 * d
            assert torch.allclose(targets[i, k], expected, atol=1e-5)
            assert abs(weights[i, k].item() - w[k]) < 1e-5


def test_direction_vanishes_when_own_caption_dominates():
    y = torch.zeros(1, 4, 2, 2)
    ema = torch.stack([y[0] + 0.001, y[0] + 3.0, y[0] - 3.0])[None]  # own caption (k=0) is far better
    targets, weights = agsm_targets(y, ema, torch.tensor([0]), 1.0, 1.0, temperature=0.1)
    assert weights[0, 0] > 0.999
    assert torch.allclose(targets[0, 0], y[0], atol=1e-3)  # y + (e_00 - ~e_00) = y


def test_gamma_neg_zero_leaves_negatives_at_y():
    g = torch.Generator().manual_seed(1)
    y, ema = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 3, 4, 2, 2, generator=g)
    targets, _ = agsm_targets(y, ema, torch.arange(3), 1.0, 0.0, 0.1)
    for i in range(3):
        for k in range(3):
            if k != i:
                assert torch.equal(targets[i, k], y[i])
        assert not torch.allclose(targets[i, i], y[i])


def test_softrepa_loss_matches_hand_computation():
    err = torch.tensor([[0.10, 0.30, 0.20], [0.50, 0.05, 0.40]])
    pos = torch.tensor([0, 1])
    total = 0.0
    for i in range(2):
        logits = [4.0 * math.exp(-e / 0.07) for e in err[i].tolist()]
        total += -(logits[pos[i]] - math.log(sum(math.exp(x) for x in logits)))
    assert abs(softrepa_loss(err, pos).item() - total / 2) < 1e-5
    per_sample = softrepa_loss(err, pos, reduction="none")
    assert per_sample.shape == (2,)


def test_softrepa_loss_rewards_lower_own_error():
    pos = torch.tensor([0])
    good, bad = torch.tensor([[0.05, 0.3]]), torch.tensor([[0.3, 0.05]])
    assert softrepa_loss(good, pos) < softrepa_loss(bad, pos)


def test_velocity_reward_scale_is_the_v_error_of_an_eps_model():
    """At a fixed x_t, an eps error maps to a v error larger by 1 / sqrt(abar_t); the factor is its square."""
    from agsm.backbones.parameterization import Epsilon, VPrediction, add_noise

    abar = torch.linspace(0.999, 0.005, 1000)
    t = torch.tensor([10, 500, 990])
    x0, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    x_t = add_noise(x0, eps, t, abar)
    eps_hat = eps + 0.1 * torch.randn_like(eps)
    a = abar[t].reshape(-1, 1, 1, 1)
    x0_hat = (x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()

    def v(e, x):
        return a.sqrt() * e - (1 - a).sqrt() * x

    v_err = (v(eps_hat, x0_hat) - v(eps, x0)).pow(2).flatten(1).mean(1)
    eps_err = (eps_hat - eps).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(v_err / eps_err, Epsilon().velocity_factor(t, abar), rtol=1e-4, atol=0)
    assert torch.equal(VPrediction().velocity_factor(t, abar), torch.ones(3))


def test_reward_scale_sharpens_the_weights_of_one_image_only():
    y = torch.zeros(2, 1, 2, 2)
    ema = torch.stack([torch.full((2, 1, 2, 2), v) for v in (0.01, 0.05)], 1)  # [B=2, K=2, ...]: caption 0 closer
    ema = torch.cat([ema[:1], ema[:1]])
    pos = torch.tensor([0, 0])
    _, plain = agsm_targets(y, ema, pos, 1.0, 1.0, 0.1)
    _, scaled = agsm_targets(y, ema, pos, 1.0, 1.0, 0.1, reward_scale=torch.tensor([1.0, 100.0]))
    torch.testing.assert_close(scaled[0], plain[0])
    assert scaled[1, 0] > plain[1, 0] > 0.5
