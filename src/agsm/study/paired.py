"""Paired comparisons of two evaluations at the same seeds: how far apart they are, and whether the suite can tell.

Two arms judged on the same prompts with the same image seeds differ only where a verdict flipped, so the
comparison is paired: the difference of their means, a bootstrap confidence interval for it that resamples
prompts (the unit the suite draws; a prompt's several images move together), and an exact McNemar test on the
flipped verdicts (wrong -> right = up, right -> wrong = down). `resolved` says whether the interval excludes 0:
a difference whose interval holds 0 is within the suite's own paired noise.

    from agsm.study.paired import compare_verdicts
    stats = compare_verdicts(base["verdicts"], other["verdicts"])   # agsm eval shapes' results.json verdicts
    stats["diff"], stats["ci_low"], stats["ci_high"], stats["flips_up"], stats["mcnemar_p"], stats["resolved"]
"""
from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

RESAMPLES = 10_000
CONFIDENCE = 0.95


def mcnemar_exact(up: int, down: int) -> float:
    """Two-sided exact McNemar p-value: under no effect each of the up + down flips is up or down with chance 1/2.

    Computed as the binomial tail by hand, in exact integers (scipy is not among the package's dependencies, and
    the tail of Binomial(n, 1/2) is a short sum): p = min(1, 2 P(X <= min(up, down))), X ~ Binomial(up + down, 1/2)."""
    if up < 0 or down < 0:
        raise ValueError(f"flip counts must be >= 0, got up={up}, down={down}")
    n, low = up + down, min(up, down)
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(low + 1))
    return min(1.0, 2 * tail / 2 ** n)


def paired_comparison(before: Sequence[float], after: Sequence[float], groups: Sequence | None = None,
                      strata: Sequence | None = None, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                      seed: int = 0) -> dict:
    """Paired difference `after - before` of per-item verdicts (bools or 0/1) at the same seeds.

    groups: one id per item (its prompt); the bootstrap resamples whole groups (default: each item alone).
    strata: one id per item (its category); groups are resampled within their stratum and the difference is the
    mean over strata of each stratum's mean difference, as the suite's `mean` averages its categories (default: one
    stratum, the plain mean over items). Returns n, groups, before, after, diff, ci_low, ci_high (percentile
    interval at `confidence`), flips_up, flips_down, mcnemar_p, resolved, and the bootstrap's settings."""
    x, y = _as_array(before, "before"), _as_array(after, "after")
    if len(x) != len(y):
        raise ValueError(f"paired verdicts need the same items in both arms, got {len(x)} and {len(y)}")
    if len(x) == 0:
        raise ValueError("no verdicts to compare")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} must lie in (0, 1), e.g. 0.95")
    if resamples < 1:
        raise ValueError(f"resamples {resamples} must be >= 1")
    groups = list(range(len(x))) if groups is None else list(groups)
    strata = [0] * len(x) if strata is None else list(strata)
    if len(groups) != len(x) or len(strata) != len(x):
        raise ValueError(f"groups ({len(groups)}) and strata ({len(strata)}) need one entry per item ({len(x)})")
    rng = np.random.default_rng(seed)
    diff = y - x
    point, draws = [], []
    for stratum in dict.fromkeys(strata):
        members = [i for i, s in enumerate(strata) if s == stratum]
        ids = list(dict.fromkeys(groups[i] for i in members))
        where = {g: k for k, g in enumerate(ids)}
        sums, counts = np.zeros(len(ids)), np.zeros(len(ids))
        for i in members:
            sums[where[groups[i]]] += diff[i]
            counts[where[groups[i]]] += 1
        point.append(sums.sum() / counts.sum())
        pick = rng.integers(0, len(ids), size=(resamples, len(ids)))
        draws.append(sums[pick].sum(1) / counts[pick].sum(1))
    estimate = float(np.mean(point))
    spread = np.mean(draws, axis=0)
    low, high = np.quantile(spread, [(1 - confidence) / 2, (1 + confidence) / 2])
    binary = bool(np.all((x == 0) | (x == 1)) and np.all((y == 0) | (y == 1)))
    up = int(((x == 0) & (y == 1)).sum()) if binary else None
    down = int(((x == 1) & (y == 0)).sum()) if binary else None
    return {"n": len(x), "groups": len(set(zip(strata, groups))), "before": float(x.mean()), "after": float(y.mean()),
            "diff": estimate, "ci_low": float(low), "ci_high": float(high), "confidence": confidence,
            "flips_up": up, "flips_down": down, "mcnemar_p": mcnemar_exact(up, down) if binary else None,
            "resolved": bool(low > 0 or high < 0), "resamples": resamples, "seed": seed}


def compare_verdicts(before: Sequence[dict], after: Sequence[dict], by_category: bool = True, **options) -> dict:
    """paired_comparison of two lists of ShapesWorld verdicts (agsm eval shapes' results.json "verdicts"), which
    must be the same prompts and image seeds in the same order; prompts are the bootstrap's groups and, with
    `by_category`, categories its strata (so `diff` is the change of the suite's category mean)."""
    if len(before) != len(after):
        raise ValueError(f"the two evaluations judged {len(before)} and {len(after)} images; compare runs of the same "
                         "suite, per-category limit and images per prompt")
    for i, (a, b) in enumerate(zip(before, after)):
        if (a["prompt"], a.get("seed")) != (b["prompt"], b.get("seed")):
            raise ValueError(f"verdict {i} is {a['prompt']!r} (seed {a.get('seed')}) in one run and {b['prompt']!r} "
                             f"(seed {b.get('seed')}) in the other: a paired comparison needs the same prompts at the "
                             "same seeds, in the same order")
    return paired_comparison([bool(v["correct"]) for v in before], [bool(v["correct"]) for v in after],
                             groups=[v["prompt"] for v in before],
                             strata=[v["category"] for v in before] if by_category else None, **options)


def _as_array(values, name: str) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds a value that is not finite")
    return array
