"""One arm of the study: train tokens with given settings over several training seeds, evaluate each.

    python -m agsm.study.arms --backbone sd15 --name agsm-hard --seeds 0 1 2 --steps 2000 \\
        --set method.hard_negatives=0.67 --prompts dev --out runs/study
    python -m agsm.study.arms --backbone sd15 --name base --prompts dev --out runs/study   # no training

Each training seed gets runs/study/<backbone>/<name>/seed<k>/ (the training run, kept and reused if its
token file exists) with eval-<prompts>.json (the suite scores and every verdict) and images-<prompts>.npz
(every image, uint8, for the effect-size comparison with the base at the same image seeds).
`--prompts dev` is a development suite built from the grammar with another seed (DEV_SUITE_SEED), for
choosing settings; `--prompts test` is the shipped suite, for reporting only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..training.checkpoint import finished_checkpoints
from ..training.config import load_config, parse_overrides
from ..demo import BACKBONES, METHODS
from ..eval.shapes import evaluate_shapes
from ..sample import load_pipeline
from ..shapes.dataset import write_training_set
from ..shapes.suite import default_suite_path, write_eval_suite
from ..training.loop import train
from .quality import image_quality

DEV_SUITE_SEED = 7
TRAIN_SET = {"n": 2000, "seed": 1}  # the demo's training set
# The DSM control: AGSM's tokens and placement, trained with the plain denoising loss on the same data.
DSM_CONTROL = {b: {"method": {"name": "dsm"}, "tokens": dict(METHODS[b]["agsm"]["tokens"])} for b in METHODS}


def prompt_file(which: str, root: Path) -> Path:
    if which == "test":
        return default_suite_path()
    if which == "dev":
        path = root / "dev_suite.jsonl"
        if not path.exists():
            write_eval_suite(path, seed=DEV_SUITE_SEED)
        return path
    return Path(which)


def arm_config(backbone: str, method: str, seed: int, steps: int, data: Path, out: Path, extra: dict,
               model: str | Path | None = None):
    """The demo's settings for `method` on `backbone` (its shipped model unless `model` names another folder of the
    same architecture), this seed and budget, then the arm's overrides."""
    overrides = {"model": {"path": str(model or BACKBONES[backbone])},
                 "data": {"path": str(data), "cache_dir": str(out.parent.parent / "cache")},
                 "train": {"output_dir": str(out), "steps": steps, "images_per_step": 4, "lr": 1e-3, "seed": seed,
                           "checkpoint_every": max(steps // 2, 1), "restart_every": steps, "log_every": 25},
                 **{k: dict(v) for k, v in METHODS[backbone].get(method, DSM_CONTROL[backbone]).items()}}
    overrides["method"]["ema_decay"] = 0.995
    for section, values in extra.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(None, overrides)


def noisy_training_set(clean: Path, share: float, seed: int = 0) -> Path:
    """A copy of `clean` in which `share` of the captions misdescribe their image by one attribute (as web captions
    do): the noisy-caption control of docs/study.md. Images are linked, not copied; which captions changed is kept in
    each record ("noisy": the true caption)."""
    import os
    import random

    from ..data.perturb import perturb_shapes

    out = clean.parent / f"{clean.name}-noisy{round(share * 100)}"
    if (out / "metadata.jsonl").exists():
        return out
    rng = random.Random(seed)
    records = [json.loads(line) for line in (clean / "metadata.jsonl").read_text().splitlines() if line.strip()]
    tmp = out.parent / f".{out.name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        link = tmp / record["file_name"]
        if not link.exists():
            os.symlink((clean / record["file_name"]).resolve(), link)
        if rng.random() < share:
            changed = perturb_shapes(record["text"], rng)  # (caption, which attribute) or None
            if changed and changed[0] != record["text"]:
                record = {**record, "text": changed[0], "noisy": record["text"], "noise_kind": changed[1]}
        lines.append(json.dumps(record))
    (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    tmp.rename(out)  # appears whole or not at all
    return out


def evaluate(backbone: str, tokens, out: Path, prompts: Path, tag: str, images_per_prompt: int, per_category,
             guidance=None, pipe=None, uncond_tokens: str = "positive", model: str | Path | None = None) -> dict:
    result = evaluate_shapes(model or BACKBONES[backbone], out / f"grids-{tag}", tokens=tokens, prompts=prompts,
                             images_per_prompt=images_per_prompt, per_category=per_category, pipe=pipe,
                             keep_images=True, guidance=guidance, uncond_tokens=uncond_tokens,
                             overwrite=True)  # an arm's grids folder follows its settings, as it always did
    images = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in result.pop("images")])
    result["quality"] = image_quality(images, result["verdicts"])
    np.savez_compressed(out / f"images-{tag}.npz", images=images)
    (out / f"eval-{tag}.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    from ..cli_options import add_model_options, add_sampler_options

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=list(BACKBONES), required=True)
    parser.add_argument("--name", required=True, help="arm name; 'base' evaluates the model without tokens")
    parser.add_argument("--method", default="agsm", choices=("agsm", "softrepa", "dsm"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, section.option=value")
    parser.add_argument("--prompts", default="dev", help="dev, test, or a suite JSONL")
    parser.add_argument("--per-category", type=int, default=None)
    parser.add_argument("--images-per-prompt", type=int, default=1)
    add_sampler_options(parser, steps=False)  # this command's --steps are training steps
    add_model_options(parser, required=False, tokens=False,
                      model_help="a base model folder of the backbone's architecture instead of the shipped one "
                                 "(give it its own --out)",
                      uncond_tokens_help="tokens in the unconditional branch at sampling (tag suffix -u<choice> "
                                         "unless positive)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate existing token files, never train")
    parser.add_argument("--noisy-captions", type=float, default=0.0,
                        help="train on a copy of the data in which this share of captions misdescribes its image by "
                             "one attribute (the noisy-caption control); give the arm its own --name")
    parser.add_argument("--out", default="runs/study")
    args = parser.parse_args(argv)

    root = Path(args.out)
    prompts = prompt_file(args.prompts, root)
    tag = args.prompts if args.prompts in ("dev", "test") else prompts.stem
    if args.guidance is not None:
        tag += f"-g{args.guidance:g}"
    if args.uncond_tokens != "positive":
        tag += f"-u{args.uncond_tokens}"
    pipe = load_pipeline(args.model or BACKBONES[args.backbone])
    if args.name == "base":
        out = root / args.backbone / "base"
        out.mkdir(parents=True, exist_ok=True)
        r = evaluate(args.backbone, None, out, prompts, tag, args.images_per_prompt, args.per_category,
                     args.guidance, pipe, model=args.model)  # no tokens: the unconditional-branch choice does not apply
        print(f"base {tag}: mean {r['mean']:.3f}")
        return
    data = write_training_set(root / "data-2000", **TRAIN_SET) if not (root / "data-2000" / "metadata.jsonl").exists() \
        else root / "data-2000"
    if not 0.0 <= args.noisy_captions <= 1.0:
        raise SystemExit(f"--noisy-captions {args.noisy_captions} must be a share between 0 and 1")
    if args.noisy_captions:
        data = noisy_training_set(data, args.noisy_captions)
    extra = parse_overrides([f"--{s}" for s in args.set])
    from ..pipelines import unload_soft_tokens
    for seed in args.seeds:
        out = root / args.backbone / args.name / f"seed{seed}"
        token_file = out / "soft_tokens.safetensors"
        if not token_file.exists():
            if args.eval_only:
                raise SystemExit(f"--eval-only: {token_file} does not exist; train the arm first")
            # an arm killed mid-training continues from its last checkpoint (same settings, or train refuses)
            train(arm_config(args.backbone, args.method, seed, args.steps, data, out, extra, args.model),
                  resume=bool(finished_checkpoints(out)))
        r = evaluate(args.backbone, token_file, out, prompts, tag, args.images_per_prompt, args.per_category,
                     args.guidance, pipe, args.uncond_tokens, args.model)
        unload_soft_tokens(pipe)
        print(f"{args.name} seed {seed} {tag}: mean {r['mean']:.3f}", flush=True)


if __name__ == "__main__":
    main()
