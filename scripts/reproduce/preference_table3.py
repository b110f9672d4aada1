#!/usr/bin/env python
"""Paper Table 3: AGSM tokens on preference-tuned backbones. For SD1.5 and SDXL, each of Diffusion-DPO, SPO and
InPO: ImageReward x100 of the tuned backbone alone and with AGSM tokens trained on it, beside the published numbers
(docs/method.md, "Combined with preference-tuned backbones"). Writes OUT/table.md and OUT/table.json.

Real size, one GPU:

    python scripts/reproduce/preference_table3.py --out runs/table3 \\
        --model sd15=/models/stable-diffusion-v1-5 --model sdxl=/models/stable-diffusion-xl-base-1.0 \\
        --pairs /data/pickapic_v2 --pairs-builder parquet --spo-scorer my_package.spm:StepAwareScorer \\
        --train-images /data/coco/train2017 --train-captions /data/coco/annotations/captions_train2017.json \\
        --coco /data/coco --imagereward /models/ImageReward --device cuda

Per backbone and method: the tuned backbone is trained with the recipe `<arch>-<method>` (src/agsm/configs) on the
Pick-a-Pic pairs (DPO, InPO) or on prompts (SPO: the COCO training captions unless --spo-prompts; SPO also needs
its step-aware preference model, --spo-scorer module:name), into RUNS/<arch>-<method>; or
`--backbone sd15-dpo=PATH` takes a published tuned checkpoint instead (a denoiser folder or weights file, or a
LoRA folder holding pytorch_lora_weights.safetensors). AGSM tokens are trained on it with the recipe `<arch>` into
RUNS/<arch>-agsm-on-<method>, and `agsm eval coco` scores ImageReward on COCO val5K without and with the tokens
(OUT/coco/<arch>-<method>[-agsm]); the folders of a given backbone end in -given.

Rough cost on one H100, an estimate and not a measurement: DPO and InPO train for an hour or two in all at these
recipes' batches; SPO samples candidate trajectories at every step (SD1.5 4k steps, SDXL 20k: ~40 GPU-hours
together); the three SD1.5 AGSM runs of 100k steps ~20; twelve 5k-image evaluations ~30 (about 1 hour each on
SD1.5, 4 on SDXL): some 90 GPU-hours, much less with published backbones.

Smoke (CPU, seconds; toy models, parquet pairs, a brightness stand-in for SPO's scorer; numbers mean nothing):

    python scripts/reproduce/preference_table3.py --smoke --out /tmp/table3
"""
from __future__ import annotations

from pathlib import Path

import _common

ARCHITECTURES = ("sd15", "sdxl")
METHODS = ("dpo", "spo", "inpo")
LORA_FILE = "pytorch_lora_weights.safetensors"


def main(argv=None) -> None:
    p = _common.parser(*__doc__.split("\n\n", 1))
    p.add_argument("--model", action="append", default=[], metavar="ARCH=DIR", help="sd15= and/or sdxl=")
    p.add_argument("--backbone", action="append", default=[], metavar="ARCH-METHOD=PATH",
                   help="a tuned backbone to use instead of training one, e.g. sd15-dpo=/models/dpo-sd15/unet")
    p.add_argument("--pairs", help="preference pairs in Pick-a-Pic's layout (caption, jpg_0, jpg_1, label_0)")
    p.add_argument("--pairs-builder", default="", help="load_dataset builder for --pairs, e.g. parquet")
    p.add_argument("--spo-prompts", help="SPO's prompts: an image folder with metadata.jsonl (default: the COCO "
                                         "training captions)")
    p.add_argument("--spo-scorer", help="SPO's step-aware preference model, module.path:name (method.scorer)")
    p.add_argument("--coco", help="COCO folder with annotations/captions_val2017.json (the evaluation prompts)")
    p.add_argument("--imagereward", help="ImageReward weights folder (agsm.metrics' layout)")
    args = p.parse_args(argv)
    _common.settle(args, ARCHITECTURES, _smoke_inputs)
    models = _common.named_paths(args.model, "--model", ARCHITECTURES)
    given = _common.named_paths(args.backbone, "--backbone", [f"{a}-{m}" for a in ARCHITECTURES for m in METHODS])
    if not models or not args.coco or not args.imagereward:
        raise SystemExit("give at least one --model ARCH=DIR, --coco DIR and --imagereward DIR (or --smoke)")

    from agsm.backbones.variants import BackboneVariant
    from agsm.report.paper_tables import coco_numbers

    from agsm.eval.coco_data import read_captions

    read_captions(args.coco, args.num)  # the evaluation's inputs are checked before hours of training
    if not Path(args.imagereward).exists():
        raise FileNotFoundError(f"--imagereward {args.imagereward} does not exist")
    plan = _common.Plan("table3", args.out)
    metrics = {"imagereward": str(args.imagereward)}
    ours, sources = {}, {}
    for arch, model in models.items():
        for method in METHODS:
            tuned = given.get(f"{arch}-{method}") or _common.train_run(
                plan, args, f"{arch}-{method}", f"{arch}-{method}", model, data=_preference_data(args, method))
            # a given backbone gets folders of its own: the same names would hold runs on another backbone
            tag = f"{arch}-{method}" + ("-given" if f"{arch}-{method}" in given else "")
            lora = Path(tuned) if (Path(tuned) / LORA_FILE).is_file() or Path(tuned).name == LORA_FILE else None
            variant = BackboneVariant(lora=str(lora)) if lora else BackboneVariant(denoiser=str(tuned))
            tokens = _common.train_run(plan, args, arch, f"{arch}-agsm-on-{tag.partition('-')[2]}", model,
                                       denoiser=None if lora else tuned, lora=lora)
            row, results_files = {}, []
            for column, token_file in (("backbone", None), ("agsm", tokens)):
                out = args.out / "coco" / (tag + ("-agsm" if token_file else ""))
                results = _common.coco_eval(plan, args, out, out.name, model=model, coco=args.coco, metrics=metrics,
                                            tokens=token_file, variant=variant, fid=False)
                row[column] = coco_numbers(results).get("imagereward")
                results_files.append(str(out / "results.json"))
            ours[f"{arch}/{method}"] = row
            sources[f"{arch}/{method}"] = {"backbone": str(tuned), "tokens": str(tokens), "results": results_files}
    _common.write("preference", ours, sources, args.out)


def _preference_data(args, method: str) -> list[str]:
    """The data options of a preference run: pairs for DPO and InPO, prompts (and the scorer) for SPO."""
    if method == "spo":
        if not args.spo_scorer:
            raise SystemExit("training SPO needs its step-aware preference model: --spo-scorer module.path:name "
                             "(or give a tuned backbone with --backbone ARCH-spo=PATH)")
        data = ["--data.path", str(args.spo_prompts)] if args.spo_prompts else _common.coco_train_data(args)
        return [*data, "--method.scorer", args.spo_scorer]
    if not args.pairs:
        raise SystemExit(f"training {method} needs --pairs (Pick-a-Pic v2), or a tuned backbone with "
                         f"--backbone ARCH-{method}=PATH")
    return ["--data.path", str(args.pairs), *(["--data.hf_builder", args.pairs_builder] if args.pairs_builder else [])]


def _smoke_inputs(args, inputs) -> None:
    args.model = [f"{arch}={path}" for arch, path in inputs["models"].items()]
    args.coco, args.imagereward = str(inputs["coco"]), str(inputs["metrics"]["imagereward"])
    args.pairs, args.pairs_builder = str(inputs["pairs"]), "parquet"
    args.spo_scorer = "_smoke:brightness_scorer"


if __name__ == "__main__":
    _common.run(main)
