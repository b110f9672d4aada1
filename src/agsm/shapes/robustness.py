"""Measuring the judge: agreement with the truth on degraded renders, for matching and mismatching prompts.

    python scripts/measure_judge.py --n 3000 --seed 0

Each scene of `sample_many` is rendered, then degraded the way a small generator's output is
imperfect: Gaussian blur (radius 0.5-1 px), Gaussian colour noise (sigma 8-10 per channel), and a
few stray pixels of random colour. The judge must accept the scene's true caption and reject, for each
kind of change that applies (count, relation, colour, shape), one changed caption that is false for
the scene's ground truth (the same `judge` applied to the true objects).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import numpy as np
from PIL import Image, ImageFilter

from .detect import detect
from .grammar import parse_prompt, to_prompt
from .render import render
from .requirements import ObjectSpec, Requirements
from .scenes import sample_many
from .spec import COLORS, SHAPES, Scene
from .verify import judge

_OPPOSITE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}


def degrade(image: Image.Image, rng: random.Random) -> np.ndarray:
    """Blur, colour noise and stray pixels; returns HxWx3 uint8."""
    blurred = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    nrng = np.random.default_rng(rng.getrandbits(32))
    arr = np.asarray(blurred, dtype=np.float32) + nrng.normal(0, rng.uniform(8, 10), (*blurred.size[::-1], 3))
    for _ in range(rng.randint(2, 6)):
        arr[rng.randrange(arr.shape[0]), rng.randrange(arr.shape[1])] = nrng.integers(0, 256, 3)
    return np.clip(arr, 0, 255).round().astype(np.uint8)


def _variants(req: Requirements, kind: str) -> list[Requirements]:
    """Every prompt differing from `req` in one count, relation, colour or shape."""
    if kind == "count":
        return [replace(req, count=c) for c in range(1, 5) if req.count is not None and c != req.count]
    if kind == "relation":
        return [replace(req, relation=_OPPOSITE[req.relation])] if req.relation else []
    out = []
    for i, spec in enumerate(req.objects):
        if kind == "color":
            news = [ObjectSpec(spec.shape, c) for c in COLORS if c != spec.color]
        else:
            news = [ObjectSpec(s, spec.color) for s in SHAPES if s != spec.shape]
        out += [replace(req, objects=req.objects[:i] + (new,) + req.objects[i + 1 :]) for new in news]
    return out


def mismatches(req: Requirements, scene: Scene, rng: random.Random) -> list[tuple[str, Requirements]]:
    """For each kind of change (count, relation, colour, shape), one changed prompt that is false for the scene."""
    out = []
    for kind in ("count", "relation", "color", "shape"):
        wrong = [v for v in _variants(req, kind) if not judge(v, scene.objects)[0]]
        if wrong:
            out.append((kind, rng.choice(wrong)))
    return out


def measure_judge(n: int = 2400, seed: int = 0) -> dict:
    """Accept and reject rates of the judge on n degraded scenes (categories in turn)."""
    rng = random.Random(seed + 1)
    accepted, rejected, n_wrong = 0, 0, 0
    failures: list[str] = []
    kinds: Counter = Counter()
    for smp in sample_many(n, seed):
        req = parse_prompt(smp.prompt)
        found = detect(degrade(render(smp.scene), rng))
        ok, reason = judge(req, found)
        accepted += ok
        if not ok:
            failures.append(f"rejected true {smp.prompt!r}: {reason}")
        for kind, wrong_req in mismatches(req, smp.scene, rng):
            n_wrong += 1
            kinds[kind] += 1
            ok, reason = judge(wrong_req, found)
            rejected += not ok
            if ok:
                failures.append(f"accepted wrong {to_prompt(wrong_req)!r} ({kind}) for {smp.prompt!r}: {reason}")
    return {
        "scenes": n,
        "agreement_on_matching": accepted / n,
        "mismatching_prompts": n_wrong,
        "mismatch_kinds": dict(kinds),
        "rejection_of_mismatching": rejected / max(1, n_wrong),
        "failures": failures,
    }
