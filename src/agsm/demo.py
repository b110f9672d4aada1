"""`make demo`: what AGSM does to a diffusion model, measured exactly, on the CPU, with no download.

    python -m agsm.demo            # about 9 minutes on 2 cores (the issue allows 15)
    python -m agsm.demo --fast     # a minute: the same pipeline at toy budget (used by the tests)

On the shipped ShapesWorld base model (a tiny SD1.5-architecture pipeline) it trains SoftREPA and
AGSM tokens with the same budget, evaluates base, SoftREPA and AGSM on the ShapesWorld suite with
three seeds, and writes runs/demo/report.md and report.html (table, bar chart, same-seed grids).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from .config import load_config
from .eval.grids import framed, grid
from .eval.report import bar_chart, markdown_table, summarise, write_report
from .eval.shapes import evaluate_shapes
from .pipelines import remove_soft_tokens
from .sample import load_pipeline
from .shapes.dataset import write_training_set
from .shapes.spec import CATEGORIES
from .train import train

BASE_MODEL = Path(__file__).parent / "shapes" / "models" / "sd15-tiny"
BUDGETS = {
    "full": {"train_images": 2000, "steps": 2000, "seeds": (0, 1, 2), "per_category": None, "images_per_prompt": 2},
    "fast": {"train_images": 32, "steps": 4, "seeds": (0,), "per_category": 2, "images_per_prompt": 1},
}
# Each method with its published SD1.5 token placement; one shared budget (steps, batch, lr, EMA).
METHODS = {
    "softrepa": {"method": {"name": "softrepa", "diagonal_weight": 10.0}, "tokens": {"stages": ["down"]}},
    "agsm": {"method": {"name": "agsm", "gamma_pos": 1.0, "gamma_neg": 1.0, "temperature": 0.1},
             "tokens": {"stages": ["down", "mid"]}},
}


def train_tokens(name: str, data: Path, out: Path, steps: int) -> Path:
    overrides = {"model": {"path": str(BASE_MODEL)}, "data": {"path": str(data), "cache_dir": str(out / "cache")},
                 # a short run: an EMA horizon of ~200 steps instead of the paper's 0.9999 over 100k steps
                 "train": {"output_dir": str(out / name), "steps": steps, "images_per_step": 4, "lr": 1e-3,
                           "checkpoint_every": max(steps // 3, 1), "restart_every": steps, "log_every": 50},
                 **{k: dict(v) for k, v in METHODS[name].items()}}
    overrides["method"]["ema_decay"] = 0.995
    return train(load_config(None, overrides))


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
    grid(rows, labels, label_width=300).save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="toy budget, for tests")
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args(argv)
    budget = BUDGETS["fast" if args.fast else "full"]
    out = Path(args.out)
    started = time.perf_counter()

    data = write_training_set(out / "data", n=budget["train_images"], seed=1)
    tokens = {"base": None}
    for name in METHODS:
        tokens[name] = train_tokens(name, data, out, budget["steps"])
    trained = time.perf_counter()

    pipe = load_pipeline(BASE_MODEL)
    runs: dict[str, list[dict]] = {}
    for name, token_file in tokens.items():
        runs[name] = [evaluate_shapes(BASE_MODEL, out / "eval" / name / f"seed{seed}", tokens=token_file,
                                      seed=seed, per_category=budget["per_category"], pipe=pipe, keep_images=True,
                                      images_per_prompt=budget["images_per_prompt"])
                      for seed in budget["seeds"]]
        remove_soft_tokens(pipe)
    evaluated = time.perf_counter()

    table = summarise(runs)
    chart = bar_chart(table, out / "accuracy.png")
    grid_path = side_by_side({n: r[0] for n, r in runs.items()}, out / "side_by_side.png")
    minutes = (evaluated - started) / 60
    intro = (f"Base model: {BASE_MODEL.name} (shipped). SoftREPA and AGSM tokens trained with the same budget: "
             f"{budget['steps']} steps x 4 images x 4 captions on {budget['train_images']} ShapesWorld images. "
             f"Suite: {len(runs['base'][0]['verdicts'])} images per seed ({budget['images_per_prompt']} per prompt), "
             f"seeds {list(budget['seeds'])}. "
             f"Ran `make demo{' --fast' if args.fast else ''}` in {minutes:.1f} min on {platform.machine()} "
             f"with {torch.get_num_threads()} threads (training {(trained - started) / 60:.1f} min).")
    notes = json.dumps({"methods": METHODS, "budget": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in budget.items()},
                        "sampler": runs["base"][0]["sampler"]}, indent=2)
    write_report(out, "AGSM on ShapesWorld", intro, table, chart, grid_path, notes)
    summary = {n: [{k: r[k] for k in ("accuracy", "mean", "overcount_rate", "seed")} for r in rs] for n, rs in runs.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + intro + "\n\n" + markdown_table(table) + f"\n\nreport: {out / 'report.md'} and {out / 'report.html'}")


if __name__ == "__main__":
    main()
