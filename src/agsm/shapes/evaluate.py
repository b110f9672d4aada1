"""Scoring a pipeline on the evaluation suite with the exact judge: accuracy per category and overall.

    python scripts/score_shapes_model.py --model src/agsm/shapes/models/sd15-tiny

Image k of suite line i is drawn with seed `seed + 1000 * k + line["seed"]`, so runs are repeatable.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .generate import generate, resolve_sampler
from .spec import CATEGORIES
from .suite import load_eval_suite
from .verify import verify


def image_seed(line: dict[str, Any], k: int, seed: int) -> int:
    return seed + 1000 * k + int(line["seed"])


def score_suite(
    pipe,
    suite: list[dict[str, Any]] | None = None,
    *,
    images_per_prompt: int = 1,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    return_images: bool = False,
) -> dict[str, Any]:
    """Per-category and mean accuracy, the counting over-count rate, and every verdict.

    steps and guidance default to the pipeline architecture's ShapesWorld sampler (generate.sampler_defaults)."""
    steps, guidance = resolve_sampler(pipe, steps, guidance)
    suite = suite if suite is not None else load_eval_suite()
    jobs = [(line, k) for line in suite for k in range(images_per_prompt)]
    images = generate(pipe, [l["prompt"] for l, _ in jobs], [image_seed(l, k, seed) for l, k in jobs],
                      steps=steps, guidance=guidance)
    hits: dict[str, list[bool]] = defaultdict(list)
    over, records = [], []
    for (line, k), image in zip(jobs, images):
        verdict = verify(image, line["prompt"], line["category"])
        hits[line["category"]].append(verdict.correct)
        req = verdict.requirements
        if req.count is not None:
            found = sum(req.objects[0].matches(d) for d in verdict.detections)
            over.append(found > req.count)
        records.append({"prompt": line["prompt"], "category": line["category"], "image": k,
                        "seed": image_seed(line, k, seed), "correct": verdict.correct, "reason": verdict.reason})
    accuracy = {c: sum(v) / len(v) for c in CATEGORIES if (v := hits.get(c))}
    result = {
        "accuracy": accuracy,
        "mean": sum(accuracy.values()) / len(accuracy),
        "overcount_rate": sum(over) / len(over) if over else None,
        "images_per_prompt": images_per_prompt,
        "seed": seed,
        "sampler": {"scheduler": type(pipe.scheduler).__name__, "steps": steps, "guidance": guidance},
        "verdicts": records,
    }
    if return_images:
        result["images"] = images
    return result
