"""The method's ceiling on a model: the ShapesWorld suite drawn with AGSM's target applied by the frozen model itself.

AGSM tokens are trained towards E[y + gamma D | x_t, c]; sampling with that target directly (agsm.guidance, the
rule in docs/alignment_guidance.md) is the best any token set could do, at K-1 extra predictions per step and no
training. One call scores one setting against the base model at the same image seeds:

    from agsm.study.ceiling import run_ceiling
    report = run_ceiling("src/agsm/shapes/models/sd15-tiny", "runs/ceiling", prompts="dev", negatives="hard",
                         gamma=1.0, temperature=0.1, where="conditional")

    out/base/<key>/       the base model's evaluation (agsm eval shapes' folder; shared by every setting with the
                          same model, prompts, sampler and seed)
    out/ceiling/<key>/    this setting's evaluation (the guidance is part of the run's identity)
    out/<key>.json, .md   the report: suite table (per category and mean, base and ceiling), verdict flips against
                          the base with a paired interval (agsm.study.paired), the quality axis
                          (agsm.study.quality), cost per image (seconds, base and ceiling, timed here)

Resumable at every grain: a finished setting's report is returned without loading the model; an unfinished one
resumes its evaluations batch by batch (agsm.eval.resumable). Sweeps call run_ceiling once per setting, passing a
loaded `pipe` to skip reloading.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..backbones.sampler_defaults import resolve_sampler
from ..draw import draw_images
from ..eval.resumable import folder_stamp
from ..eval.shapes import evaluate_shapes
from ..guidance import DEFAULT_K, AlignmentGuidance, make_negatives
from ..sample import load_pipeline
from ..shapes.evaluate import image_seed
from ..shapes.spec import CATEGORIES
from ..shapes.suite import load_eval_suite
from ..utils.atomic_files import write_json, write_text
from ..utils.devices import dtype_name, resolve_device_and_dtype
from ..utils.markdown_tables import fixed, markdown_table
from .arms import prompt_file
from .paired import compare_verdicts
from .quality import image_quality

REPORT_VERSION = 1  # a report written by another version of this code is computed again


def run_ceiling(model, out, prompts: str = "dev", negatives: str = "hard", gamma: float = 1.0,
                temperature: float = 0.1, where: str = "conditional", guidance: float | None = None,
                per_category: int | None = None, seed: int = 0, k: int = DEFAULT_K, negatives_seed: int = 0,
                steps: int | None = None, reward_space: str = "target", images_per_prompt: int = 1,
                batch_size: int = 50, timing_images: int = 8, device: str = "cpu", dtype="float32", pipe=None,
                show_progress: bool = True) -> dict:
    """Score one ceiling setting against the base at the same seeds; returns (and writes) its report.

    prompts: dev (the study's development suite, grammar seed 7), test (the shipped suite) or a suite JSONL.
    negatives: hard (one-attribute perturbations) | inbatch (other prompts of the prompt file, all of it even with
    `per_category`); k: the prompt plus k - 1 negatives. guidance / steps None: the model's recommended sampler.
    timing_images: images timed in one batch each way for the cost per image (0: not timed)."""
    out = Path(out)
    if pipe is None:
        device, dtype = resolve_device_and_dtype(device, dtype)
    else:
        dtype = pipe.dtype  # as evaluate_shapes records it
    suite_path = prompt_file(prompts, out)
    suite = load_eval_suite(suite_path)
    texts = [line["prompt"] for line in suite]
    table = make_negatives(negatives, texts, k=k, seed=negatives_seed, prompt_set=texts)
    hook = AlignmentGuidance(table, gamma, temperature, where, reward_space,
                             description=f"{negatives}, K={k}, seed {negatives_seed}")
    sampler = {"steps": steps, "guidance": guidance, "seed": seed, "per_category": per_category,
               "images_per_prompt": images_per_prompt, "batch_size": batch_size, "dtype": dtype_name(dtype)}
    base_identity = {"model": str(Path(model).resolve()), "model_files": folder_stamp(model),
                     "suite_sha256": _digest(suite_path.read_bytes()), **sampler}
    identity = {"version": REPORT_VERSION, **base_identity, "prompts": str(prompts), **hook.identity(),
                "negatives_kind": negatives, "k": k, "negatives_seed": negatives_seed}
    key = setting_key(model, prompts, negatives, k, gamma, temperature, where, guidance, per_category, seed, identity)
    report_path = out / f"{key}.json"
    if report_path.is_file():
        saved = json.loads(report_path.read_text())
        if saved.get("identity") == identity:
            return saved
    if pipe is None:
        pipe = load_pipeline(model, device, dtype)
    common = dict(prompts=suite_path, per_category=per_category, seed=seed, steps=steps, guidance=guidance,
                  images_per_prompt=images_per_prompt, batch_size=batch_size, pipe=pipe, keep_images=True,
                  show_progress=show_progress)
    folders = {"base": out / "base" / f"base-{_digest(json.dumps(base_identity, sort_keys=True))[:10]}",
               "ceiling": out / "ceiling" / key}
    base = evaluate_shapes(model, folders["base"], **common)
    ceiling = evaluate_shapes(model, folders["ceiling"], sampling_hook=hook, **common)
    report = {"identity": identity, "key": key, "model": str(model), "prompts": str(prompts),
              "folders": {name: str(path) for name, path in folders.items()},
              "setting": {"negatives": negatives, "k": k, "gamma": gamma, "temperature": temperature, "where": where,
                          "reward_space": reward_space, "guidance": ceiling["sampler"]["guidance"],
                          "steps": ceiling["sampler"]["steps"], "seed": seed, "per_category": per_category},
              **compare_runs(base, ceiling)}
    report["cost"] = cost_per_image(pipe, suite, hook, seed, steps, guidance, timing_images)
    write_json(report_path, report)
    write_text(out / f"{key}.md", report_markdown(report) + "\n")
    return report


def compare_runs(base: dict, ceiling: dict) -> dict:
    """Suite table, paired statistics (overall and per category), flipped verdicts and quality of two evaluations
    (evaluate_shapes results with keep_images) at the same seeds."""
    rows = []
    for category in [c for c in CATEGORIES if c in base["accuracy"]]:
        pick = [i for i, v in enumerate(base["verdicts"]) if v["category"] == category]
        stats = compare_verdicts([base["verdicts"][i] for i in pick], [ceiling["verdicts"][i] for i in pick],
                                 by_category=False)
        rows.append({"category": category, "base": base["accuracy"][category],
                     "ceiling": ceiling["accuracy"][category], **_brief(stats)})
    overall = compare_verdicts(base["verdicts"], ceiling["verdicts"])
    rows.append({"category": "mean", "base": base["mean"], "ceiling": ceiling["mean"], **_brief(overall)})
    flipped = [{"prompt": b["prompt"], "category": b["category"], "seed": b["seed"], "base": b["correct"],
                "ceiling": c["correct"]} for b, c in zip(base["verdicts"], ceiling["verdicts"])
               if b["correct"] != c["correct"]]
    return {"table": rows, "paired": overall, "flipped": flipped,
            "quality": {"base": image_quality(_stack(base["images"])),
                        "ceiling": image_quality(_stack(ceiling["images"]))}}


def cost_per_image(pipe, suite: list[dict], hook: AlignmentGuidance, seed: int, steps, guidance,
                   images: int) -> dict | None:
    """Seconds per image, base and ceiling, from one batch of `images` suite prompts drawn each way after a one-image
    warm-up each way (so neither pays first-call costs)."""
    if images < 1:
        return None
    steps, guidance = resolve_sampler(pipe, steps, guidance)
    lines = suite[:images]
    prompts, seeds = [line["prompt"] for line in lines], [image_seed(line, 0, seed) for line in lines]

    def timed(guided: bool, n: int) -> float:
        with hook.applied(pipe) if guided else nullcontext():
            start = time.perf_counter()
            draw_images(pipe, prompts[:n], seeds[:n], steps=steps, guidance=guidance, batch_size=n)
            return time.perf_counter() - start

    timed(False, 1), timed(True, 1)
    base, ceiling = timed(False, len(lines)) / len(lines), timed(True, len(lines)) / len(lines)
    return {"images": len(lines), "steps": steps, "base_s_per_image": base, "ceiling_s_per_image": ceiling,
            "ratio": ceiling / base}


def report_markdown(report: dict) -> str:
    """The report as markdown: the suite table with paired flips and intervals, then quality and cost lines."""
    paired = report["paired"]
    conf = round(100 * paired["confidence"])
    rows = [[r["category"], fixed(r["base"]), fixed(r["ceiling"]), f"{r['diff']:+.3f}",
             f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['flips_up']} / {r['flips_down']}",
             _p_value(r["mcnemar_p"]), "yes" if r["resolved"] else "no"] for r in report["table"]]
    s = report["setting"]
    lines = [f"Ceiling of {Path(report['model']).name} on the {report['prompts']} suite: {s['negatives']} negatives "
             f"(K={s['k']}), gamma {s['gamma']:g}, T {s['temperature']:g}, {s['where']}, guidance {s['guidance']:g}, "
             f"{s['steps']} steps, image seed {s['seed']}; base and ceiling at the same seeds.", "",
             markdown_table(["", "base", "ceiling", "diff", f"{conf}% CI (paired bootstrap)", "flips up / down",
                             "McNemar p", "resolved"], rows), ""]
    q = report["quality"]
    lines.append("quality: " + "; ".join(f"{name} {q['base'][name]:.3f} -> {q['ceiling'][name]:.3f}"
                                         for name in ("clean_rate", "malformed_rate", "background_noise")))
    cost = report.get("cost")
    if cost:
        lines.append(f"cost: {cost['base_s_per_image']:.3f} s/image base, {cost['ceiling_s_per_image']:.3f} s/image "
                     f"ceiling (x{cost['ratio']:.2f}, {cost['images']} images timed)")
    return "\n".join(lines)


def setting_key(model, prompts, negatives, k, gamma, temperature, where, guidance, per_category, seed,
                identity: dict) -> str:
    """A readable folder name for a setting, ending in a digest of everything that identifies it."""
    name = Path(str(prompts)).stem if str(prompts) not in ("dev", "test") else str(prompts)
    parts = [Path(model).name, name, f"{negatives}{k}", f"g{gamma:g}", f"T{temperature:g}", where,
             f"s{guidance:g}" if guidance is not None else "sdefault", f"seed{seed}"]
    if per_category is not None:
        parts.append(f"pc{per_category}")
    return "-".join(parts) + "-" + _digest(json.dumps(identity, sort_keys=True))[:8]


def _p_value(p: float | None) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _brief(stats: dict) -> dict:
    return {k: stats[k] for k in ("diff", "ci_low", "ci_high", "flips_up", "flips_down", "mcnemar_p", "resolved", "n")}


def _stack(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])


def _digest(data) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()
