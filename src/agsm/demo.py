"""`make demo`: what AGSM does to a diffusion model, measured exactly, on the CPU, with no download.

    python -m agsm.demo                    # the three shipped ShapesWorld models (see BUDGETS for the sizes)
    python -m agsm.demo --backbones sd15   # one of them
    python -m agsm.demo --fast             # the same pipeline at toy budget (used by the tests)

On each shipped ShapesWorld base model (tiny SD1.5-, SDXL- and SD3-architecture pipelines) it trains SoftREPA
and AGSM tokens with the same budget, evaluates base, SoftREPA and AGSM on the ShapesWorld suite over
seeds, and writes runs/demo/report.md and report.html (per backbone: table, bar chart, same-seed grid).
The work runs in worker processes of one thread each (one per core, `--jobs`), cut into jobs (each backbone's
training; each variant's evaluation at each seed) taken costliest first: these small models use a core each better
than two threads share one model, and small jobs let the workers finish together.
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
from .utils.image_grids import framed, grid
from .report.variants import Section, bar_chart, markdown_table, summarise, write_report
from .eval.shapes import evaluate_shapes
from .shapes.dataset import write_training_set
from .shapes.spec import CATEGORIES
from .training.loop import train

MODELS = Path(__file__).parent / "shapes" / "models"
BACKBONES = {"sd15": MODELS / "sd15-tiny", "sdxl": MODELS / "sdxl-tiny", "sd3": MODELS / "sd3-tiny"}
BUDGETS = {
    "full": {"sd15": {"train_images": 2000, "steps": 2000, "seeds": (0, 1, 2), "per_category": None,
                      "images_per_prompt": 2},
             # The tiny SD3 is about 8x costlier per image on a CPU than the tiny SD1.5: a smaller budget.
             "sd3": {"train_images": 2000, "steps": 400, "seeds": (0,), "per_category": None,
                     "images_per_prompt": 1},
             # The tiny SDXL costs about what the tiny SD1.5 does per step; 1,000 steps and one evaluation seed keep the
             # demo under 15 minutes on 2 cores (the study's SDXL rows train 2,000 steps over 3 seeds).
             "sdxl": {"train_images": 2000, "steps": 1000, "seeds": (0,), "per_category": None,
                      "images_per_prompt": 1}},
    "fast": {name: {"train_images": 32, "steps": 4, "seeds": (0,), "per_category": 2, "images_per_prompt": 1}
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


def side_by_side(results: dict[str, dict], path: Path, per_category: int = 2) -> Path:
    """Rows: the first prompts of each category; columns: the variants, same prompt and seed."""
    rows, labels = [], []
    names = list(results)
    verdicts = results[names[0]]["verdicts"]
    for category in CATEGORIES:
        picks = [i for i, v in enumerate(verdicts) if v["category"] == category and v["image"] == 0][:per_category]
        for i in picks:
            rows.append([framed(results[n]["images"][i], results[n]["verdicts"][i]["correct"]) for n in names])
            labels.append(verdicts[i]["prompt"])
    grid(rows, labels, label_width=300, headers=names).save(path)
    return path


# Rough CPU seconds per training step (both methods together count twice) and per image generated and judged, one
# thread, from the 2026-12 demo runs; they only order the jobs, costliest first, so the two workers finish together.
STEP_SECONDS = {"sd15": 0.063, "sdxl": 0.066, "sd3": 0.31}
IMAGE_SECONDS = {"sd15": 0.05, "sdxl": 0.05, "sd3": 0.37}
SUITE_PROMPTS = 300  # the shipped suite


@dataclass(frozen=True)
class Job:
    """One unit of the demo's work: train a backbone's tokens (both methods, one shared cache), or evaluate one
    variant at one evaluation seed (after its backbone's training, except the base)."""

    kind: str  # "train" | "eval"
    backbone: str
    variant: str = ""
    seed: int = 0

    def cost(self, budget: dict) -> float:
        if self.kind == "train":
            return STEP_SECONDS[self.backbone] * budget["steps"] * len(METHODS[self.backbone])
        prompts = SUITE_PROMPTS if budget["per_category"] is None else budget["per_category"] * len(CATEGORIES)
        return IMAGE_SECONDS[self.backbone] * prompts * budget["images_per_prompt"]


def train_job(backbone: str, budget: dict, out: Path, data: Path) -> tuple[dict[str, Path], float]:
    """Both methods' tokens, one after the other (they share the encode-once cache); (token files, minutes)."""
    started = time.perf_counter()
    tokens = {name: train_tokens(backbone, name, data, out, budget["steps"]) for name in METHODS[backbone]}
    return tokens, (time.perf_counter() - started) / 60


def eval_job(backbone: str, budget: dict, out: Path, name: str, token_file: Path | None, seed: int
             ) -> tuple[dict, float]:
    """One variant at one evaluation seed on the suite; (the result with its images, seconds)."""
    started = time.perf_counter()
    result = evaluate_shapes(BACKBONES[backbone], out / "eval" / name / f"seed{seed}", tokens=token_file, seed=seed,
                             per_category=budget["per_category"], keep_images=True,
                             images_per_prompt=budget["images_per_prompt"], uncond_tokens=UNCOND_TOKENS[backbone],
                             overwrite=True)  # the demo retrains on every run: its old evaluations are not kept
    return result, time.perf_counter() - started


def section_of(backbone: str, budget: dict, out: Path, runs: dict[str, list[dict]], seconds: dict[str, float],
               training_minutes: float) -> tuple[Section, dict, dict]:
    """The report's section for one backbone, from its evaluations (per variant, in seed order)."""
    model = BACKBONES[backbone]
    # generation and judging throughput per variant (tokens cost a little at sampling)
    images_per_s = {n: round(sum(len(r["verdicts"]) for r in rs) / seconds[n], 2) for n, rs in runs.items()}
    minutes = training_minutes + sum(seconds.values()) / 60
    table = summarise(runs)
    intro = (f"Base model: {model.name} (shipped). SoftREPA and AGSM tokens trained with the same budget: "
             f"{budget['steps']} steps x 4 images x 4 captions on {budget['train_images']} ShapesWorld images. "
             f"Suite: {len(runs['base'][0]['verdicts'])} images per seed ({budget['images_per_prompt']} per prompt), "
             f"evaluation seeds {list(budget['seeds'])}, sampler {runs['base'][0]['sampler']}, "
             f"tokens in the unconditional branch: psi{'-' if UNCOND_TOKENS[backbone] == 'negative' else '+'}. "
             f"One training seed per method: the ± is the spread over evaluation seeds; "
             f"{STUDY_SPREAD[backbone]} "
             f"{minutes:.1f} worker-min (training {training_minutes:.1f} min); images generated and judged per "
             f"second: {', '.join(f'{n} {v}' for n, v in images_per_s.items())}.")
    section = Section(backbone, intro, table, bar_chart(table, out / "accuracy.png"),
                      side_by_side({n: r[0] for n, r in runs.items()}, out / "side_by_side.png"))
    summary = {n: [{k: r[k] for k in ("accuracy", "mean", "overcount_rate", "seed")} for r in rs]
               for n, rs in runs.items()}
    return section, summary, {"methods": METHODS[backbone], "budget": budget, "minutes": round(minutes, 2),
                              "training_minutes": round(training_minutes, 2), "images_per_s": images_per_s}


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
    """Every backbone's section. The work is cut into jobs (training per backbone, evaluation per variant and seed)
    run in `jobs` worker processes, costliest ready job first: with whole backbones per worker one worker idled for
    minutes at the end (11.8 min in all for 10.7 min of work per worker)."""
    sizes = {budgets[b]["train_images"] for b in backbones}
    # written once, before any worker reads them
    datasets = {n: write_training_set(out / f"data-{n}", n=n, seed=1) for n in sorted(sizes)}
    ready = [Job("train", b) for b in backbones] + [Job("eval", b, "base", s) for b in backbones
                                                   for s in budgets[b]["seeds"]]
    tokens: dict[str, dict] = {b: {"base": None} for b in backbones}
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
                    future = pool.submit(eval_job, b, budgets[b], out / b, job.variant, tokens[b][job.variant],
                                         job.seed)
                running[future] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                if job.kind == "train":
                    trained, training_minutes[job.backbone] = future.result()
                    tokens[job.backbone].update(trained)
                    ready += [Job("eval", job.backbone, name, s) for name in trained
                              for s in budgets[job.backbone]["seeds"]]
                else:
                    results[(job.backbone, job.variant, job.seed)] = future.result()
    sections = {}
    for b in backbones:
        runs = {n: [results[(b, n, s)][0] for s in budgets[b]["seeds"]] for n in tokens[b]}
        seconds = {n: sum(results[(b, n, s)][1] for s in budgets[b]["seeds"]) for n in tokens[b]}
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
        print(f"\n{backbone}: {section.intro}\n\n{markdown_table(section.table)}", flush=True)

    minutes = (time.perf_counter() - started) / 60
    intro = (f"Ran `make demo{' DEMO_ARGS=--fast' if args.fast else ''}` ({', '.join(args.backbones)}) in "
             f"{minutes:.1f} min on {platform.machine()} ({os.cpu_count()} cores), {jobs} worker process(es) of "
             f"{max(1, torch.get_num_threads() // jobs) if jobs > 1 else torch.get_num_threads()} thread(s).")
    write_report(out, "AGSM on ShapesWorld", intro, sections, json.dumps(notes, indent=2, default=list))
    write_json(out / "summary.json", summary)
    print(f"\n{intro}\nreport: {out / 'report.md'} and {out / 'report.html'}")


if __name__ == "__main__":
    main()
