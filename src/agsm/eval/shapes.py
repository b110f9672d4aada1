"""`agsm eval shapes`: generate the ShapesWorld suite with a model (and tokens), judge every image exactly.

    agsm eval shapes --model src/agsm/shapes/models/sd15-tiny --tokens runs/demo/sd15/agsm --out runs/eval

Writes results.json (accuracy per category and mean, the over-count rate on counting prompts, every
verdict) and one grid per category with each image framed green (correct) or red (wrong).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..pipelines import load_soft_tokens
from ..sample import load_pipeline
from ..shapes.evaluate import score_suite
from ..shapes.spec import CATEGORIES
from ..shapes.suite import load_eval_suite
from .grids import framed, grid


def evaluate_shapes(model, out, tokens=None, prompts=None, images_per_prompt: int = 1, seed: int = 0,
                    steps: int | None = None, guidance: float | None = None,
                    uncond_tokens: str = "positive", per_category: int | None = None, pipe=None,
                    keep_images: bool = False) -> dict:
    """Score one model (+ tokens) on the suite; `per_category` keeps the first N prompts of each category.

    steps / guidance None: the ShapesWorld sampler of the model's architecture (shapes.generate.SAMPLER_DEFAULTS).
    """
    if images_per_prompt < 1:
        raise ValueError(f"--images-per-prompt {images_per_prompt} must be >= 1")
    suite = load_eval_suite(prompts)
    if per_category is not None:
        suite = [line for c in CATEGORIES for line in [l for l in suite if l["category"] == c][:per_category]]
    pipe = pipe or load_pipeline(model)
    if tokens:
        load_soft_tokens(pipe, tokens, uncond_tokens=uncond_tokens)
    result = score_suite(pipe, suite, images_per_prompt=images_per_prompt, seed=seed, steps=steps,
                         guidance=guidance, return_images=True)
    images = result.pop("images")
    result.update({"model": str(model), "tokens": str(tokens) if tokens else None, "uncond_tokens": uncond_tokens,
                   "prompts": str(prompts) if prompts else "shipped suite"})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    _write_grids(out, result["verdicts"], images, images_per_prompt)
    if keep_images:
        result["images"] = images
    return result


def _write_grids(out: Path, verdicts: list[dict], images: list, per_prompt: int, max_rows: int = 25) -> None:
    """Per category: one row per prompt (up to max_rows), its images side by side."""
    for category in CATEGORIES:
        chosen = [(v, im) for v, im in zip(verdicts, images) if v["category"] == category]
        if not chosen:
            continue
        rows = [chosen[i:i + per_prompt] for i in range(0, len(chosen), per_prompt)][:max_rows]
        sheet = grid([[framed(im, v["correct"]) for v, im in row] for row in rows],
                     labels=[row[0][0]["prompt"] for row in rows], label_width=260)
        sheet.save(out / f"grid_{category}.png")


def print_summary(result: dict) -> str:
    lines = [f"{c:14s} {result['accuracy'][c]:.3f}" for c in CATEGORIES if c in result["accuracy"]]
    lines.append(f"{'mean':14s} {result['mean']:.3f}")
    if result["overcount_rate"] is not None:
        lines.append(f"{'over-count':14s} {result['overcount_rate']:.3f}")
    return "\n".join(lines)
