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
    jobs = suite_jobs(suite, images_per_prompt)
    images = generate(pipe, [l["prompt"] for l, _ in jobs], [image_seed(l, k, seed) for l, k in jobs],
                      steps=steps, guidance=guidance)
    judged = [judge_image(line, k, seed, image) for (line, k), image in zip(jobs, images)]
    result = summarize(judged, images_per_prompt=images_per_prompt, seed=seed,
                       sampler=sampler_record(pipe, steps, guidance))
    if return_images:
        result["images"] = images
    return result


def suite_jobs(suite: list[dict[str, Any]], images_per_prompt: int) -> list[tuple[dict[str, Any], int]]:
    """(suite line, image number) of every image, in the order they are drawn and reported."""
    return [(line, k) for line in suite for k in range(images_per_prompt)]


def sampler_record(pipe, steps: int, guidance: float) -> dict[str, Any]:
    return {"scheduler": type(pipe.scheduler).__name__, "steps": steps, "guidance": guidance}


def judge_image(line: dict[str, Any], k: int, seed: int, image) -> dict[str, Any]:
    """The verdict on image k of a suite line, plus `overcount` (counting prompts: more found than asked)."""
    verdict = verify(image, line["prompt"], line["category"])
    req = verdict.requirements
    overcount = None
    if req.count is not None:
        overcount = sum(req.objects[0].matches(d) for d in verdict.detections) > req.count
    return {"prompt": line["prompt"], "category": line["category"], "image": k, "seed": image_seed(line, k, seed),
            "correct": verdict.correct, "reason": verdict.reason, "overcount": overcount}


def summarize(judged: list[dict[str, Any]], *, images_per_prompt: int, seed: int,
              sampler: dict[str, Any]) -> dict[str, Any]:
    """Accuracy per category and mean, over-count rate and the verdicts, from judge_image's records in order."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for j in judged:
        hits[j["category"]].append(j["correct"])
    over = [j["overcount"] for j in judged if j["overcount"] is not None]
    accuracy = {c: sum(v) / len(v) for c in CATEGORIES if (v := hits.get(c))}
    return {
        "accuracy": accuracy,
        "mean": sum(accuracy.values()) / len(accuracy),
        "overcount_rate": sum(over) / len(over) if over else None,
        "images_per_prompt": images_per_prompt,
        "seed": seed,
        "sampler": sampler,
        "verdicts": [{k: v for k, v in j.items() if k != "overcount"} for j in judged],
    }
