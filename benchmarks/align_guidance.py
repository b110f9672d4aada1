"""Time overhead of alignment-guided sampling (issue 28): seconds per image of a stock pipeline with and without
`align_guidance`, on the shipped tiny ShapesWorld models.

    python benchmarks/align_guidance.py                                  # sd15, sdxl, sd3 tiny; K 2 and 4; CPU
    python benchmarks/align_guidance.py --models sd15 --k 4 --repeats 5 --json /tmp/align.json

What is measured: whole pipeline calls as `agsm sample` and `agsm ceiling` make them (agsm.draw.draw_images: one CPU
generator per image, the model's recommended sampler, guidance on), `--batch` images of suite prompts per call, with
hard negatives (agsm.guidance.make_negatives). Each condition (base, then K = each --k, where conditional) is called
once per round after `--warmup` rounds, in an order reversed every other round so slow drifts hit all alike; the
median call time gives seconds per image and the overhead is the median of the paired ratios t_K / t_base.

Beside it, the denoiser rows per step counted by a forward hook: base 2 per image (classifier-free guidance), the
rule adds K-1 per image (its negatives run on the conditional rows), so the denoiser's work grows by (K+1)/2; text
encoding and VAE decoding dilute it in the whole call. `where` does not change the cost (the same calls, another
combination), so only conditional is timed. Prints a table and writes JSON (default
benchmarks/align_guidance_<device>.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"sd15": "sd15-tiny", "sdxl": "sdxl-tiny", "sd3": "sd3-tiny"}


def suite_prompts(n: int) -> list[tuple[str, int]]:
    """The first n prompts of the shipped suite, one per category in turn, with their image seeds."""
    from agsm.shapes.suite import load_eval_suite

    suite = load_eval_suite(None)
    by_category: dict[str, list[dict]] = {}
    for line in suite:
        by_category.setdefault(line["category"], []).append(line)
    mixed = [line for group in zip(*by_category.values()) for line in group]
    return [(line["prompt"], line["seed"]) for line in mixed[:n]]


class RowCounter:
    """Rows through the denoiser per pipeline call (every call, the rule's own included)."""

    def __init__(self, model):
        self.rows = 0
        self.handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self.rows += sample.shape[0]


def measure(name: str, ks: list[int], batch: int, warmup: int, repeats: int, device: str) -> list[dict]:
    from agsm.backbones.sampler_defaults import resolve_sampler
    from agsm.draw import draw_images
    from agsm.guidance import AlignmentGuidance, make_negatives
    from agsm.pipelines import denoiser_of
    from agsm.sample import load_pipeline

    pipe = load_pipeline(ROOT / "src/agsm/shapes/models" / MODELS[name], device, torch.float32)
    steps, guidance = resolve_sampler(pipe)
    jobs = suite_prompts(batch)
    prompts, seeds = [p for p, _ in jobs], [s for _, s in jobs]
    conditions = {"base": None}
    for k in ks:
        conditions[f"K={k}"] = AlignmentGuidance(make_negatives("hard", prompts, k=k), gamma=1.0)
    counter = RowCounter(denoiser_of(pipe))
    times: dict[str, list[float]] = {c: [] for c in conditions}
    rows: dict[str, int] = {}
    for round_index in range(warmup + repeats):
        order = list(conditions) if round_index % 2 == 0 else list(reversed(conditions))
        for condition in order:
            hook = conditions[condition]
            counter.rows = 0
            with hook.applied(pipe) if hook is not None else nullcontext():
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                draw_images(pipe, prompts, seeds, steps=steps, guidance=guidance, batch_size=batch)
                if device == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - start
            rows[condition] = counter.rows
            if round_index >= warmup:
                times[condition].append(elapsed)
    counter.handle.remove()
    base = times["base"]
    results = []
    for condition, samples in times.items():
        ratios = [t / b for t, b in zip(samples, base)]
        results.append({"model": name, "condition": condition, "steps": steps, "guidance": guidance, "batch": batch,
                        "s_per_image": statistics.median(samples) / batch,
                        "overhead": statistics.median(ratios), "overhead_min": min(ratios),
                        "overhead_max": max(ratios), "denoiser_rows_per_step": rows[condition] / steps,
                        "denoiser_rows_ratio": rows[condition] / rows["base"], "times_s": samples})
    return results


def table(results: list[dict]) -> str:
    lines = ["| model | condition | s/image | x base (median, min-max) | denoiser rows/step | rows x base |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['condition']} | {r['s_per_image']:.3f} | {r['overhead']:.2f} "
                     f"({r['overhead_min']:.2f}-{r['overhead_max']:.2f}) | {r['denoiser_rows_per_step']:.0f} | "
                     f"{r['denoiser_rows_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4], help="K values to time (prompt + K-1 negatives)")
    parser.add_argument("--batch", type=int, default=8, help="images per pipeline call (default 8)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="default: benchmarks/align_guidance_<device>.json")
    args = parser.parse_args(argv)
    results = []
    for name in args.models:
        results += measure(name, args.k, args.batch, args.warmup, args.repeats, args.device)
    print(table(results))
    record = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device},
              "settings": {k: v for k, v in vars(args).items() if k != "json"}, "results": results}
    out = args.json or Path(__file__).resolve().parent / f"align_guidance_{args.device}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
