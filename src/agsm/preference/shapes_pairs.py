"""`agsm shapes pairs`: preference pairs on ShapesWorld, the base model's own images judged exactly.

    agsm shapes pairs --model src/agsm/shapes/models/sd15-tiny --prompts 500 --candidates 4 --out runs/pairs

Each prompt comes from the training grammar (shapes.dataset.training_samples: the suite's held-out compositions are
excluded, so the evaluation suite is never trained on). The model draws `candidates` images of it, one seed per
image (shapes.generate.generate); the exact judge (shapes.verify) marks each correct or not. The first correct image
is preferred to the first incorrect one; a prompt whose candidates are all correct or all wrong gives no pair (a tie)
and is counted. Pairs are written in the Pick-a-Pic layout that `data.format pairs` reads: out/images/*.png and
out/metadata.jsonl with caption, jpg_0, jpg_1 and label_0 (1: jpg_0 preferred, 0: jpg_1), the preferred image placed
first or second at random, plus category, seeds and the loser's verdict; out/pairs.json sums it all up.
Image j of prompt i is drawn from seed `seed + candidates * i + j`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from ..utils.atomic_files import write_json, write_png, write_text
from ..utils.progress import progress
from ..shapes.dataset import training_samples
from ..shapes.generate import generate, resolve_sampler
from ..shapes.verify import verify

PROMPT_SEED_OFFSET = 104_729  # the pairs' prompts are drawn apart from the default training set (seed 1)


def make_pairs(pipe, out_dir, num_prompts: int, candidates: int = 4, seed: int = 0, steps: int | None = None,
               guidance: float | None = None, batch_size: int = 50, show_progress: bool = True) -> dict:
    """Draw, judge and write the pairs; returns the summary written to out/pairs.json."""
    if num_prompts < 1:
        raise ValueError(f"--prompts {num_prompts} must be >= 1")
    if candidates < 2:
        raise ValueError(f"--candidates {candidates} must be >= 2 (a pair needs two images)")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    steps, guidance = resolve_sampler(pipe, steps, guidance)
    samples = training_samples(num_prompts, seed + PROMPT_SEED_OFFSET)
    rng = random.Random(seed)
    lines, ties = [], {"all_correct": 0, "all_wrong": 0}
    per_call = max(1, batch_size // candidates)  # whole prompts per pipeline call
    with progress(total=len(samples), desc="pairs", unit="prompt", disable=not show_progress) as bar:
        for start in range(0, len(samples), per_call):
            chunk = samples[start:start + per_call]
            prompts = [s.prompt for s in chunk for _ in range(candidates)]
            seeds = [seed + candidates * (start + i) + j for i in range(len(chunk)) for j in range(candidates)]
            images = generate(pipe, prompts, seeds, steps=steps, guidance=guidance, batch_size=len(prompts))
            for i, sample in enumerate(chunk):
                index = start + i
                drawn = images[i * candidates:(i + 1) * candidates]
                verdicts = [verify(image, sample.prompt, sample.category) for image in drawn]
                good = [j for j, v in enumerate(verdicts) if v.correct]
                bad = [j for j, v in enumerate(verdicts) if not v.correct]
                if not good or not bad:
                    ties["all_correct" if not bad else "all_wrong"] += 1
                    continue
                w, l = good[0], bad[0]
                files = {}
                for j in (w, l):
                    files[j] = f"images/{index:06d}_{j}.png"
                    write_png(out / files[j], drawn[j])
                winner_first = rng.random() < 0.5
                first, second = (w, l) if winner_first else (l, w)
                lines.append({"caption": sample.prompt, "jpg_0": files[first], "jpg_1": files[second],
                              "label_0": 1 if winner_first else 0, "category": sample.category,
                              "seed_0": seeds[i * candidates + first], "seed_1": seeds[i * candidates + second],
                              "loser_reason": verdicts[l].reason})
            bar.update(len(chunk))
    write_text(out / "metadata.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    summary = {"model": str(getattr(pipe, "name_or_path", "") or ""), "prompts": num_prompts,
               "candidates": candidates, "seed": seed, "steps": steps, "guidance": guidance, "pairs": len(lines),
               "ties": ties, "format": "pick-a-pic (caption, jpg_0, jpg_1, label_0)"}
    write_json(out / "pairs.json", summary)
    return summary


def add_command(shapes_subparsers) -> None:
    """`agsm shapes pairs` under the `agsm shapes` tools."""
    from ..cli_options import (SHAPES_PIPELINE_HELP, add_device_options, add_model_options, add_sampler_options,
                               add_variant_options)

    cmd = shapes_subparsers.add_parser("pairs", help="preference pairs: the model's own images of training prompts, "
                                                     "judged exactly (a correct vs an incorrect image)")
    add_model_options(cmd, model_help=SHAPES_PIPELINE_HELP, tokens=False, uncond_tokens=False)
    cmd.add_argument("--prompts", type=int, required=True, help="training-grammar prompts to draw (each may give a pair)")
    cmd.add_argument("--candidates", type=int, default=4, help="images drawn per prompt (default 4)")
    cmd.add_argument("--seed", type=int, default=0, help="seeds the prompts, the images and the pair order (default 0)")
    add_sampler_options(cmd)
    cmd.add_argument("--batch-size", type=int, default=48, help="images per pipeline call (default 48)")
    cmd.add_argument("--out", required=True, help="folder for images/, metadata.jsonl and pairs.json")
    add_variant_options(cmd)
    add_device_options(cmd)
    cmd.set_defaults(run=_run)


def _run(args, extra) -> None:
    from ..backbones.variants import variant_from_args
    from ..sample import load_pipeline

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm shapes pairs -h")
    pipe = load_pipeline(args.model, args.device, args.dtype, variant_from_args(args))
    summary = make_pairs(pipe, args.out, args.prompts, args.candidates, args.seed, args.steps, args.guidance,
                         args.batch_size)
    from ..utils.counts import count

    print(f"wrote {count(summary['pairs'], 'pair')} of {count(args.prompts, 'prompt')} to {args.out} (ties dropped: "
          f"{summary['ties']['all_correct']} all correct, {summary['ties']['all_wrong']} all wrong)")
