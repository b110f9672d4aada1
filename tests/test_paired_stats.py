"""agsm.study.paired against cases checkable by hand: exact McNemar p-values, bootstrap intervals that cover a known
difference and exclude 0 on a clear effect, flips, strata and grouped resampling, and refused mismatches."""
from math import comb

import numpy as np
import pytest

from agsm.study.paired import compare_verdicts, mcnemar_exact, paired_comparison


@pytest.mark.parametrize("up,down,expected", [
    (0, 5, 2 / 32),                       # all five flips one way: 2 * (1/2)^5
    (1, 9, 2 * (1 + 10) / 1024),          # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    (3, 3, 1.0),                          # balanced: the tail passes 1/2, capped at 1
    (0, 0, 1.0),                          # no flips: no evidence
    (20, 5, 2 * sum(comb(25, k) for k in range(6)) / 2 ** 25),
])
def test_mcnemar_exact_matches_the_binomial_tail(up, down, expected):
    assert mcnemar_exact(up, down) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(down, up) == mcnemar_exact(up, down)  # two-sided


def test_flips_and_difference_are_counted_as_by_hand():
    before = [1, 1, 0, 0, 1, 0, 1, 0]
    after = [1, 0, 1, 1, 1, 0, 1, 1]
    stats = paired_comparison(before, after, resamples=2000)
    assert (stats["flips_up"], stats["flips_down"]) == (3, 1)
    assert stats["diff"] == pytest.approx((3 - 1) / 8)
    assert stats["before"] == pytest.approx(0.5) and stats["after"] == pytest.approx(0.75)
    assert stats["mcnemar_p"] == pytest.approx(mcnemar_exact(3, 1))
    assert stats["ci_low"] <= stats["diff"] <= stats["ci_high"]


def test_the_interval_covers_the_true_difference_and_excludes_zero_on_a_clear_effect():
    rng = np.random.default_rng(3)
    n = 600
    before = rng.random(n) < 0.5
    # wrong -> right with chance 0.2, right -> wrong with chance 0.05: expected difference 0.5 * 0.2 - 0.5 * 0.05
    true_diff = 0.5 * 0.2 - 0.5 * 0.05
    flip = rng.random(n) < np.where(before, 0.05, 0.2)
    after = before ^ flip
    stats = paired_comparison(before, after, seed=1)
    assert stats["ci_low"] < true_diff < stats["ci_high"]
    assert stats["resolved"] and stats["ci_low"] > 0 and stats["mcnemar_p"] < 1e-3  # a clear effect

    noise = rng.random(n) < 0.5
    shuffled = noise.copy()
    swap = rng.choice(n, 40, replace=False)
    shuffled[swap] = ~shuffled[swap]  # flips both ways, about as many each way
    null = paired_comparison(noise, shuffled, seed=1)
    assert null["ci_low"] <= 0 <= null["ci_high"] and not null["resolved"]
    assert paired_comparison(noise, shuffled, seed=1) == null  # seeded: the same interval again


def test_strata_average_the_categories_and_groups_resample_whole_prompts():
    before = [0, 0, 0, 0, 1, 1]
    after = [1, 1, 1, 1, 1, 0]
    strata = ["a", "a", "a", "a", "b", "b"]
    stats = paired_comparison(before, after, strata=strata, resamples=500)
    assert stats["diff"] == pytest.approx((1.0 + (-0.5)) / 2)  # mean of the categories' mean differences
    # two prompts of two images each: resampling prompts, the mean is one of a few values only
    grouped = paired_comparison([0, 0, 0, 0], [1, 1, 0, 0], groups=["p", "p", "q", "q"], resamples=500)
    assert grouped["groups"] == 2 and grouped["ci_low"] == pytest.approx(0) and grouped["ci_high"] == pytest.approx(1)


def _verdicts(correct, seeds=None):
    return [{"prompt": f"prompt {i}", "category": "single_object" if i % 2 else "counting", "seed": (seeds or {}).get(i, i),
             "correct": bool(c)} for i, c in enumerate(correct)]


def test_compare_verdicts_pairs_by_prompt_and_seed_and_refuses_other_runs():
    stats = compare_verdicts(_verdicts([0, 1, 0, 1]), _verdicts([1, 1, 0, 0]), resamples=200)
    assert (stats["flips_up"], stats["flips_down"], stats["n"]) == (1, 1, 4)
    with pytest.raises(ValueError, match="same prompts at the same seeds"):
        compare_verdicts(_verdicts([0, 1]), _verdicts([0, 1], seeds={1: 99}))
    with pytest.raises(ValueError, match="judged 2 and 3 images"):
        compare_verdicts(_verdicts([0, 1]), _verdicts([0, 1, 1]))
    with pytest.raises(ValueError, match="same items in both arms"):
        paired_comparison([0, 1], [1])
