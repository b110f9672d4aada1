"""`agsm eval shapes`: generate the ShapesWorld suite with a model (and tokens), judge every image exactly.

    agsm eval shapes --model src/agsm/shapes/models/sd15-tiny --tokens runs/demo/sd15/agsm --out runs/eval

Writes results.json (accuracy per category and mean, the over-count rate on counting prompts, every
verdict) and one grid per category with each image framed green (correct) or red (wrong). Each batch of
images is saved (images/) and its verdicts appended to manifest.jsonl as it finishes, so a killed run, started
again with the same arguments, draws only the missing batches and writes a byte-identical results.json.
Batches keep their boundaries (--batch-size), so every image is drawn exactly as in an uninterrupted run.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from ..draw import draw_images
from ..utils.atomic_files import write_json, write_png
from ..utils.devices import dtype_name, resolve_device_and_dtype
from ..pipelines import load_soft_tokens
from ..utils.progress import progress
from ..utils.image_grids import framed, grid
from ..sample import load_pipeline
from ..shapes.evaluate import image_seed, judge_image, sampler_record, suite_jobs, summarize
from ..shapes.generate import resolve_sampler
from ..shapes.spec import CATEGORIES
from ..shapes.suite import load_eval_suite
from .resumable import ResumableRun, file_digest, folder_stamp


def evaluate_shapes(model, out, tokens=None, prompts=None, images_per_prompt: int = 1, seed: int = 0,
                    steps: int | None = None, guidance: float | None = None,
                    uncond_tokens: str = "positive", per_category: int | None = None, pipe=None,
                    keep_images: bool = False, batch_size: int = 50, device: str = "cpu",
                    dtype="float32", show_progress: bool = True, variant=None, overwrite: bool = False,
                    sampling_hook=None) -> dict:
    """Score one model (+ tokens) on the suite; `per_category` keeps the first N prompts of each category.

    steps / guidance None: the model's recommended sampler (the shipped models: 25 steps, guidance sd15 6, sd3 5),
    else its architecture's (agsm.backbones.sampler_defaults). device / dtype ('auto' allowed) are ignored when `pipe` is
    given; a run resumes only in the precision it started with. variant: another denoiser and/or a LoRA on the
    model (agsm.backbones.variants), part of the run's identity. A folder holding a run with other settings is
    refused, or with `overwrite` started afresh (agsm.eval.resumable: the one resume policy). sampling_hook: an
    object with `identity()` (a JSON dict, recorded in the run's settings: part of its identity) and `applied(pipe)`
    (a context manager under which every batch is drawn), e.g. agsm.guidance.AlignmentGuidance.
    """
    if images_per_prompt < 1:
        raise ValueError(f"--images-per-prompt {images_per_prompt} must be >= 1")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be >= 1")
    suite = load_eval_suite(prompts)
    if per_category is not None:
        suite = [line for c in CATEGORIES for line in [l for l in suite if l["category"] == c][:per_category]]
    jobs = suite_jobs(suite, images_per_prompt)
    if pipe is None:
        device, dtype = resolve_device_and_dtype(device, dtype)
    else:
        device, dtype = str(pipe.device), pipe.dtype
    settings = {"model": str(Path(model).resolve()), "model_files": folder_stamp(model),
                "tokens": str(Path(tokens).resolve()) if tokens else None,
                "tokens_sha256": file_digest(_token_file(tokens)), "uncond_tokens": uncond_tokens,
                "suite": [[line["prompt"], line["category"], line["seed"]] for line in suite],
                "images_per_prompt": images_per_prompt, "seed": seed, "steps": steps, "guidance": guidance,
                "batch_size": batch_size, "dtype": dtype_name(dtype)}
    if variant is not None and not variant.is_stock:  # only then, so runs of the stock model resume as before
        settings["variant"] = {**variant.describe(), "files": [folder_stamp(p) if Path(p).is_dir() else file_digest(p)
                                                              for p in (variant.denoiser, variant.lora) if p]}
    if sampling_hook is not None:  # only then, as for variants: runs without one resume as before
        settings["sampling_hook"] = sampling_hook.identity()
    run = ResumableRun(out, settings, overwrite=overwrite)
    done = run.entries
    batches = [range(i, min(i + batch_size, len(jobs))) for i in range(0, len(jobs), batch_size)]
    todo = [b for b in batches if not all(i in done for i in b)]
    if todo or run.sampler is None:
        pipe = pipe or load_pipeline(model, device, dtype, variant)
        if tokens:
            load_soft_tokens(pipe, tokens, uncond_tokens=uncond_tokens)
        steps, guidance = resolve_sampler(pipe, steps, guidance)
        run.resolve({"sampler": sampler_record(pipe, steps, guidance)})
        with progress(total=sum(len(b) for b in todo), desc="eval shapes", unit="img",
                      disable=not show_progress) as bar, \
                (sampling_hook.applied(pipe) if sampling_hook is not None else nullcontext()):
            for batch in todo:
                _draw_batch(pipe, run, [(i, *jobs[i]) for i in batch], seed, steps, guidance)
                bar.update(len(batch))
    entries = run.entries
    judged = [{k: v for k, v in entries[i].items() if k not in ("index", "file")} for i in range(len(jobs))]
    result = summarize(judged, images_per_prompt=images_per_prompt, seed=seed, sampler=run.sampler)
    result.update({"model": str(model), "tokens": str(tokens) if tokens else None, "uncond_tokens": uncond_tokens,
                   "variant": settings.get("variant"),
                   "prompts": str(prompts) if prompts else "shipped suite"})
    out = Path(out)
    write_json(out / "results.json", result)
    images = [run.image(i) for i in range(len(jobs))]
    _write_grids(out, result["verdicts"], images, images_per_prompt)
    if keep_images:
        result["images"] = images
    return result


def _draw_batch(pipe, run: ResumableRun, batch: list[tuple[int, dict, int]], seed: int, steps: int,
                guidance: float) -> None:
    """Draw one batch in one pipeline call, save its images, then record their verdicts in the manifest."""
    images = draw_images(pipe, [line["prompt"] for _, line, _ in batch],
                         [image_seed(line, k, seed) for _, line, k in batch], steps=steps, guidance=guidance,
                         batch_size=len(batch))
    entries = []
    for (index, line, k), image in zip(batch, images):
        file = run.image_path(index)
        write_png(run.out / file, image)
        entries.append({"index": index, "file": file, **judge_image(line, k, seed, image)})
    run.record(entries)


def _token_file(tokens) -> Path | None:
    if not tokens:
        return None
    from ..tokens.token_file import resolve_token_path

    return resolve_token_path(tokens)


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
