"""`make demo`: what AGSM does to a diffusion model, measured exactly, on the CPU, with no download.

    python -m agsm.demo                    # the three shipped ShapesWorld models (see BUDGETS for the sizes)
    python -m agsm.demo --backbones sd15   # one of them
    python -m agsm.demo --fast             # the same pipeline at toy budget (used by the tests)

On each shipped ShapesWorld base model (tiny SD1.5-, SDXL- and SD3-architecture pipelines) it trains SoftREPA
and AGSM tokens with the same budget and evaluates four variants at the same image seeds: the base, SoftREPA, AGSM
and the ceiling (no tokens: the AGSM target applied by the frozen model itself at sampling, the best any token set
could learn; agsm.guidance). It writes runs/demo/report.md and report.html (per backbone: table, paired differences
with intervals, bar chart, and the images whose verdicts differ between variants).
The work runs in worker processes of one thread each (one per core, `--jobs`), cut into jobs (each backbone's
training; each variant's evaluation) taken costliest first: these small models use a core each better than two
threads share one model, and small jobs let the workers finish together.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from .utils.atomic_files import write_json
from .training.config import load_config
from .report.paired_sections import disagreement_grid, paired_markdown, paired_rows
from .report.variants import Section, bar_chart, markdown_table, summarise, write_report
from .eval.shapes import evaluate_shapes
from .shapes.dataset import write_training_set
from .shapes.spec import CATEGORIES
from .training.loop import train

MODELS = Path(__file__).parent / "shapes" / "models"
BACKBONES = {"sd15": MODELS / "sd15-tiny", "sdxl": MODELS / "sdxl-tiny", "sd3": MODELS / "sd3-tiny"}
# Sized for <= 10 minutes on 2 cores (docs/study.md, "The demo's cuts"): what keeps the conclusions. sd15-tiny gets
# the full suite with two images per prompt, so its paired intervals are the narrowest (the headline); sdxl-tiny the
# full suite once; sd3-tiny, about 5x costlier per image on a CPU, 15 prompts per category. Token budgets are half the
# study's (sd15 1,000 steps against 2,000; sdxl 500; sd3 200): the study found 4x the steps moved images only from
# 3.8 to 4.1 of 255.
BUDGETS = {
    "full": {"sd15": {"train_images": 2000, "steps": 1000, "per_category": None, "images_per_prompt": 2},
             "sdxl": {"train_images": 2000, "steps": 500, "per_category": None, "images_per_prompt": 1},
             "sd3": {"train_images": 2000, "steps": 200, "per_category": 15, "images_per_prompt": 1}},
    "fast": {name: {"train_images": 32, "steps": 4, "per_category": 2, "images_per_prompt": 1}
             for name in BACKBONES},
}
# What the study measured over training seeds for these recipes (docs/study.md), shown beside the demo's numbers.
STUDY_SPREAD = {
    "sd15": "the ShapesWorld study (docs/study.md) trained each recipe with 3 training seeds: the spread of the "
            "suite mean over training seeds was 0.002-0.007.",
    "sd3": "the ShapesWorld study (docs/study.md) has the training-seed spread of these recipes at 1,000 steps.",
    "sdxl": "the ShapesWorld study (docs/study.md) trained each recipe with 3 training seeds (its SDXL rows).",
}
# Where psi+ / psi- go at sampling per backbone (docs/method.md, Inference): psi+ in both guidance branches, or psi- in
# the unconditional one (the public SDXL script). sdxl: chosen on the study's development suite (docs/study.md).
UNCOND_TOKENS = {"sd15": "positive", "sdxl": "positive", "sd3": "positive"}
# Each method with its published token placement and settings per backbone (docs/method.md); one shared budget
# (steps, batch, lr, EMA) for both methods of a backbone.
METHODS = {
    "sd15": {
        "softrepa": {"method": {"name": "softrepa", "diagonal_weight": 10.0}, "tokens": {"stages": ["down"]}},
        "agsm": {"method": {"name": "agsm", "gamma_pos": 1.0, "gamma_neg": 1.0, "temperature": 0.1},
                 "tokens": {"stages": ["down", "mid"]}},
    },
    # SDXL: both methods in the down and mid blocks; gamma_neg 1 as in the paper's table (the public code: 0.1).
    "sdxl": {
        "softrepa": {"method": {"name": "softrepa", "diagonal_weight": 10.0}, "tokens": {"stages": ["down", "mid"]}},
        "agsm": {"method": {"name": "agsm", "gamma_pos": 1.0, "gamma_neg": 1.0, "temperature": 0.1},
                 "tokens": {"stages": ["down", "mid"]}},
    },
    "sd3": {
        "softrepa": {"method": {"name": "softrepa", "diagonal_weight": 0.0}, "tokens": {"blocks": 5}},
        "agsm": {"method": {"name": "agsm", "gamma_pos": 1.0, "gamma_neg": 0.1, "temperature": 0.1,
                            "ema_at": "previous_step"}, "tokens": {"blocks": 5}},
    },
}


def train_tokens(backbone: str, name: str, data: Path, out: Path, steps: int) -> Path:
    overrides = {"model": {"path": str(BACKBONES[backbone])},
                 "data": {"path": str(data), "cache_dir": str(out / "cache")},
                 # a short run: an EMA horizon of ~200 steps instead of the paper's 0.9999 over 100k steps
                 "train": {"output_dir": str(out / name), "steps": steps, "images_per_step": 4, "lr": 1e-3,
                           "checkpoint_every": max(steps // 3, 1), "restart_every": steps, "log_every": 50},
                 **{k: dict(v) for k, v in METHODS[backbone][name].items()}}
    overrides["method"]["ema_decay"] = 0.995
    return train(load_config(None, overrides), overwrite=True)  # the demo retrains on every run


# The ceiling (docs/alignment_guidance.md): the AGSM target applied by the frozen model at sampling, with the setting
# each model's development-suite sweep chose, the same on all three (docs/study.md, "The ceiling";
# scripts/run_ceiling_study.sh).
CEILING = dict.fromkeys(BACKBONES, {"negatives": "hard", "gamma": 0.3, "temperature": 0.1, "where": "after-guidance"})
VARIANTS = ("base", "softrepa", "agsm", "ceiling")
# The paired comparisons each section reports, headline first.
COMPARISONS = [("base", "agsm"), ("base", "ceiling"), ("base", "softrepa"), ("softrepa", "agsm")]

# Rough CPU seconds per training step (both methods together count twice) and per image generated and judged, one
# thread, from the 2026-12 demo runs; the ceiling draws K - 1 = 3 extra predictions per step (x2.2 measured,
# benchmarks/align_guidance.py). They only order the jobs, costliest first, so the workers finish together.
STEP_SECONDS = {"sd15": 0.063, "sdxl": 0.066, "sd3": 0.31}
IMAGE_SECONDS = {"sd15": 0.05, "sdxl": 0.05, "sd3": 0.37}
CEILING_COST = 2.2
SUITE_PROMPTS = 300  # the shipped suite


@dataclass(frozen=True)
class Job:
    """One unit of the demo's work: train a backbone's tokens (both methods, one shared cache), or evaluate one
    variant (after its backbone's training, except the base and the ceiling, which need none)."""

    kind: str  # "train" | "eval"
    backbone: str
    variant: str = ""

    def cost(self, budget: dict) -> float:
        if self.kind == "train":
            return STEP_SECONDS[self.backbone] * budget["steps"] * len(METHODS[self.backbone])
        prompts = SUITE_PROMPTS if budget["per_category"] is None else budget["per_category"] * len(CATEGORIES)
        factor = CEILING_COST if self.variant == "ceiling" else 1.0
        return IMAGE_SECONDS[self.backbone] * prompts * budget["images_per_prompt"] * factor


def train_job(backbone: str, budget: dict, out: Path, data: Path) -> tuple[dict[str, Path], float]:
    """Both methods' tokens, one after the other (they share the encode-once cache); (token files, minutes)."""
    started = time.perf_counter()
    tokens = {name: train_tokens(backbone, name, data, out, budget["steps"]) for name in METHODS[backbone]}
    return tokens, (time.perf_counter() - started) / 60


def ceiling_hook(backbone: str):
    from .guidance import DEFAULT_K, AlignmentGuidance, make_negatives
    from .shapes.suite import load_eval_suite

    setting = CEILING[backbone]
    negatives = make_negatives(setting["negatives"], [line["prompt"] for line in load_eval_suite(None)])
    return AlignmentGuidance(negatives, setting["gamma"], setting["temperature"], setting["where"],
                             description=f"{setting['negatives']}, K={DEFAULT_K}, seed 0")


def eval_job(backbone: str, budget: dict, out: Path, name: str, token_file: Path | None) -> tuple[dict, float]:
    """One variant on the suite at image seed 0; (the result with its images, seconds)."""
    started = time.perf_counter()
    hook = ceiling_hook(backbone) if name == "ceiling" else None
    result = evaluate_shapes(BACKBONES[backbone], out / "eval" / name, tokens=token_file, seed=0,
                             per_category=budget["per_category"], keep_images=True,
                             images_per_prompt=budget["images_per_prompt"], uncond_tokens=UNCOND_TOKENS[backbone],
                             sampling_hook=hook,
                             overwrite=True)  # the demo retrains on every run: its old evaluations are not kept
    return result, time.perf_counter() - started


def section_of(backbone: str, budget: dict, out: Path, runs: dict[str, dict], seconds: dict[str, float],
               training_minutes: float) -> tuple[Section, dict, dict]:
    """The report's section for one backbone, from its evaluations (one per variant, same seeds)."""
    model = BACKBONES[backbone]
    images_per_s = {n: round(len(r["verdicts"]) / seconds[n], 2) for n, r in runs.items()}
    minutes = training_minutes + sum(seconds.values()) / 60
    table = summarise({n: [r] for n, r in runs.items()})
    paired = paired_rows(runs, COMPARISONS)
    headline = paired[0]
    grid_path, differ, total = disagreement_grid(runs, out / "side_by_side.png")
    c = CEILING[backbone]
    intro = (f"Base model: {model.name} (shipped). SoftREPA and AGSM tokens trained with the same budget: "
             f"{budget['steps']} steps x 4 images x 4 captions on {budget['train_images']} ShapesWorld images. "
             f"Ceiling: no tokens; the AGSM target applied by the frozen model at every sampling step "
             f"({c['negatives']} negatives, K=4, gamma {c['gamma']:g}, T {c['temperature']:g}, {c['where']}; chosen on "
             f"the development suite, docs/study.md). Suite: {total} images ({budget['images_per_prompt']} per prompt, "
             f"image seed 0, the same in every column), sampler {runs['base']['sampler']}, tokens in the "
             f"unconditional branch: psi{'-' if UNCOND_TOKENS[backbone] == 'negative' else '+'}. One training seed per "
             f"method; {STUDY_SPREAD[backbone]} Headline (AGSM against the base, paired): "
             f"{headline['diff']:+.3f} [{headline['ci_low']:+.3f}, {headline['ci_high']:+.3f}], "
             f"{'resolved' if headline['resolved'] else 'not resolved by this suite (the interval holds 0)'}. "
             f"{differ} of {total} images get a different verdict in some column; the grid shows those. "
             f"{minutes:.1f} worker-min (training {training_minutes:.1f} min); images generated and judged per "
             f"second: {', '.join(f'{n} {v}' for n, v in images_per_s.items())}.")
    section = Section(backbone, intro, table, bar_chart(table, out / "accuracy.png"), grid_path,
                      paired=paired_markdown(paired),
                      grid_caption=f"Rows: images whose verdicts differ between the columns ({differ} of {total}; up "
                                   f"to 2 per category).")
    summary = {n: [{k: r[k] for k in ("accuracy", "mean", "overcount_rate", "seed")}] for n, r in runs.items()}
    summary["paired"] = [{k: v for k, v in row.items() if k != "confidence"} for row in paired]
    return section, summary, {"methods": METHODS[backbone], "ceiling": c, "budget": budget,
                              "minutes": round(minutes, 2), "training_minutes": round(training_minutes, 2),
                              "images_per_s": images_per_s, "verdicts_differ": [differ, total]}


def _use_threads(threads: int) -> None:
    torch.set_num_threads(threads)


class _InlineExecutor:
    """Runs each job when it is submitted: the one-worker path, with the same scheduling code as the pool."""

    def submit(self, fn, *args) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through the future, as a pool does
            future.set_exception(error)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def run_all(backbones: list[str], budgets: dict, out: Path, jobs: int) -> dict[str, tuple[Section, dict, dict]]:
    """Every backbone's section. The work is cut into jobs (training per backbone, evaluation per variant) run in
    `jobs` worker processes, costliest ready job first: with whole backbones per worker one worker idled for
    minutes at the end (11.8 min in all for 10.7 min of work per worker)."""
    sizes = {budgets[b]["train_images"] for b in backbones}
    # written once, before any worker reads them
    datasets = {n: write_training_set(out / f"data-{n}", n=n, seed=1) for n in sorted(sizes)}
    # the base and the ceiling need no training: they start at once
    ready = [Job("train", b) for b in backbones] + [Job("eval", b, v) for b in backbones for v in ("base", "ceiling")]
    tokens: dict[str, dict] = {b: {"base": None, "ceiling": None} for b in backbones}
    training_minutes: dict[str, float] = {}
    results: dict[tuple, tuple[dict, float]] = {}
    threads = max(1, torch.get_num_threads() // jobs)
    # spawn: a fresh interpreter per worker, so no thread pool or lock state is inherited from this process
    pool = (ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_use_threads, initargs=(threads,))
            if jobs > 1 else _InlineExecutor())
    with pool:
        running: dict[Future, Job] = {}
        while ready or running:
            ready.sort(key=lambda j: j.cost(budgets[j.backbone]))
            while ready and len(running) < max(jobs, 1):
                job = ready.pop()
                b = job.backbone
                if job.kind == "train":
                    future = pool.submit(train_job, b, budgets[b], out / b, datasets[budgets[b]["train_images"]])
                else:
                    future = pool.submit(eval_job, b, budgets[b], out / b, job.variant, tokens[b][job.variant])
                running[future] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                if job.kind == "train":
                    trained, training_minutes[job.backbone] = future.result()
                    tokens[job.backbone].update(trained)
                    ready += [Job("eval", job.backbone, name) for name in trained]
                else:
                    results[(job.backbone, job.variant)] = future.result()
    sections = {}
    for b in backbones:
        runs = {n: results[(b, n)][0] for n in VARIANTS}
        seconds = {n: results[(b, n)][1] for n in VARIANTS}
        sections[b] = section_of(b, budgets[b], out / b, runs, seconds, training_minutes[b])
    return sections


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="toy budget, for tests")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes (default: one per core)")
    args = parser.parse_args(argv)
    missing = [str(BACKBONES[b]) for b in args.backbones if not (BACKBONES[b] / "model_index.json").is_file()]
    if missing:
        raise SystemExit(f"the shipped ShapesWorld model is missing at {', '.join(missing)}; "
                         "reinstall agsm or retrain it with `agsm shapes pretrain --arch sd15|sdxl|sd3`")
    out = Path(args.out)
    started = time.perf_counter()
    jobs = args.jobs or os.cpu_count() or 1
    if jobs < 1:
        raise SystemExit(f"--jobs {jobs} must be >= 1")
    budgets = {b: BUDGETS["fast" if args.fast else "full"][b] for b in args.backbones}
    results = run_all(args.backbones, budgets, out, jobs)
    sections, summary, notes = [], {}, {}
    for backbone in args.backbones:
        section, summary[backbone], notes[backbone] = results[backbone]
        sections.append(section)
        print(f"\n{backbone}: {section.intro}\n\n{markdown_table(section.table)}\n\n{section.paired}", flush=True)

    minutes = (time.perf_counter() - started) / 60
    intro = (f"Ran `make demo{' DEMO_ARGS=--fast' if args.fast else ''}` ({', '.join(args.backbones)}) in "
             f"{minutes:.1f} min on {platform.machine()} ({os.cpu_count()} cores), {jobs} worker process(es) of "
             f"{max(1, torch.get_num_threads() // jobs) if jobs > 1 else torch.get_num_threads()} thread(s). "
             "Cut to fit 10 minutes on 2 cores, keeping the conclusions: half the study's training steps, sd3-tiny on "
             "15 prompts per category, two images per prompt on sd15-tiny only, where the headline comparison is "
             "(docs/study.md, \"The demo's cuts\").")
    write_report(out, "AGSM on ShapesWorld", intro, sections, json.dumps(notes, indent=2, default=list))
    write_json(out / "summary.json", summary)
    print(f"\n{intro}\nreport: {out / 'report.md'} and {out / 'report.html'}")


if __name__ == "__main__":
    main()
