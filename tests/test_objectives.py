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
