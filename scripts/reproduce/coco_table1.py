#!/usr/bin/env python
"""Paper Table 1: SD1.5, SDXL and SD3 on COCO val5K (the first caption of each val2017 image): ImageReward x100,
PickScore, CLIP x100, HPSv2 x100 and FID of the base model, SoftREPA tokens and AGSM tokens, beside the published
numbers (docs/method.md, "Published results"). Writes OUT/table.md and OUT/table.json.

Real size, one GPU, every backbone (drop a --model to leave its rows out):

    python scripts/reproduce/coco_table1.py --out runs/table1 \\
        --model sd15=/models/stable-diffusion-v1-5 --model sdxl=/models/stable-diffusion-xl-base-1.0 \\
        --model sd3=/models/stable-diffusion-3-medium-diffusers \\
        --train-images /data/coco/train2017 --train-captions /data/coco/annotations/captions_train2017.json \\
        --coco /data/coco --metrics imagereward=/models/ImageReward pickscore=/models/PickScore_v1 \\
            clip=/models/clip-vit-large-patch14 hpsv2=/models/hpsv2 \\
        --inception /models/pt_inception-2015-12-05-6726825d.pth --device cuda

Per backbone it trains the recipes `<arch>-softrepa` and `<arch>` (AGSM) from src/agsm/configs into RUNS/<arch>-
softrepa and RUNS/<arch>-agsm (`agsm train`), then evaluates the base model and both token files
(`agsm eval coco` into OUT/coco/<arch>-<method>). `--tokens sd15-agsm=FILE` evaluates a token file you have (the
authors' imported tokens, a run trained elsewhere) instead of training that row. Rough cost on one H100, an
estimate from the step times in benchmarks/RESULTS.md and typical sampling speeds, not a measurement: SD1.5 about
13 GPU-hours (AGSM 100k steps at ~0.25 s, SoftREPA 59k, three 5k-image evaluations of ~1 hour), SDXL about 16
(training at 512 px is short; three evaluations at 1024 px, ~4 hours each), SD3 about 47 (AGSM 100k and SoftREPA 59k
steps, ~35 hours; evaluations at 1024 px): some 75-80 GPU-hours for the whole table.
Run it again to resume: finished runs and evaluations are skipped, interrupted ones continue.

Smoke (CPU, seconds; random toy models and fake data, the numbers mean nothing):

    python scripts/reproduce/coco_table1.py --smoke --out /tmp/table1
"""
from __future__ import annotations

from pathlib import Path

import _common

ARCHITECTURES = ("sd15", "sdxl", "sd3")
METHODS = ("base", "softrepa", "agsm")


def main(argv=None) -> None:
    p = _common.parser(*__doc__.split("\n\n", 1))
    p.add_argument("--model", action="append", default=[], metavar="ARCH=DIR",
                   help="a diffusers folder per backbone: sd15=, sdxl=, sd3=")
    p.add_argument("--tokens", action="append", default=[], metavar="ARCH-METHOD=FILE",
                   help="evaluate this token file for a row instead of training it, e.g. sd3-agsm=FILE")
    p.add_argument("--coco", help="COCO folder with annotations/captions_val2017.json and val2017/")
    p.add_argument("--metrics", nargs="+", action="extend", default=[], metavar="NAME=PATH",
                   help="metric weights: imagereward= pickscore= clip= hpsv2= (agsm.metrics' layouts)")
    p.add_argument("--inception", help="FID's Inception weights (pytorch-fid's pt_inception-2015-12-05 file)")
    args = p.parse_args(argv)
    _common.settle(args, ARCHITECTURES, _smoke_inputs)
    models = _common.named_paths(args.model, "--model", ARCHITECTURES)
    given = _common.named_paths(args.tokens, "--tokens", [f"{a}-{m}" for a in ARCHITECTURES for m in METHODS[1:]])
    metrics = {name: str(path) for name, path in _common.named_paths(args.metrics, "--metrics", _METRIC_NAMES).items()}
    if not models or not args.coco:
        raise SystemExit("give at least one --model ARCH=DIR and --coco DIR (or --smoke)")

    from agsm.eval.coco_data import read_captions
    from agsm.eval.scoring import parse_metric_specs
    from agsm.report.paper_tables import coco_numbers

    read_captions(args.coco, args.num)  # the evaluation's inputs are checked before hours of training
    parse_metric_specs([f"{k}={v}" for k, v in metrics.items()])
    if args.inception and not Path(args.inception).is_file():
        raise FileNotFoundError(f"--inception {args.inception} does not exist")
    plan = _common.Plan("table1", args.out)
    ours, sources = {}, {}
    for arch, model in models.items():
        tokens = {"base": None}
        for method in METHODS[1:]:
            recipe = arch if method == "agsm" else f"{arch}-{method}"
            tokens[method] = given.get(f"{arch}-{method}") or _common.train_run(plan, args, recipe,
                                                                               f"{arch}-{method}", model)
        for method, token_file in tokens.items():
            row = f"{arch}/{method}"
            out = args.out / "coco" / f"{arch}-{method}"
            results = _common.coco_eval(plan, args, out, f"{arch} {method}", model=model, coco=args.coco,
                                        metrics=metrics, tokens=token_file, inception=args.inception,
                                        fid_reference=args.out / "coco" / f"fid_reference_{arch}_{args.num}.npz")
            ours[row] = coco_numbers(results)
            sources[row] = {"results": str(out / "results.json"), "tokens": str(token_file) if token_file else None}
    _common.write("coco", ours, sources, args.out)


_METRIC_NAMES = ("imagereward", "pickscore", "clip", "hpsv2", "aesthetic")


def _smoke_inputs(args, inputs) -> None:
    args.model = [f"{arch}={path}" for arch, path in inputs["models"].items()]
    args.coco = str(inputs["coco"])
    args.metrics = [f"{name}={path}" for name, path in inputs["metrics"].items()]


if __name__ == "__main__":
    _common.run(main)
