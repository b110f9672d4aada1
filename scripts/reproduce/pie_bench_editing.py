#!/usr/bin/env python
"""PIE-Bench editing with and without the AGSM tokens: PnP and MasaCtrl on SD1.5, RF-Inversion, FlowEdit and
FlowAlign on SD3; structure distance, background PSNR / LPIPS / MSE / SSIM and CLIP whole / edited, beside the
paper's finding (docs/method.md, "Editing": the CLIP similarity rises while the structure metrics hold; that page
gives no numbers). Writes OUT/table.md and OUT/table.json.

Real size, one GPU:

    python scripts/reproduce/pie_bench_editing.py --out runs/pie --model sd15=/models/stable-diffusion-v1-5 \\
        --model sd3=/models/stable-diffusion-3-medium-diffusers \\
        --train-images /data/coco/train2017 --train-captions /data/coco/annotations/captions_train2017.json \\
        --pie /data/PIE-Bench/data --clip /models/clip-vit-large-patch14 --lpips /models/lpips \\
        --dino /models/dino-vitb8 --device cuda

It trains AGSM tokens with the recipes sd15 and sd3 into RUNS/sd15-agsm and RUNS/sd3-agsm (the runs coco_table1.py
trains: give both scripts one --runs folder), or takes them from --tokens sd15=FILE; then every editor edits all
700 entries with its paper's settings (agsm.editing; docs/editing.md), without and with the tokens (`agsm eval
pie-bench` into OUT/pie/<arch>-<editor>[-tokens]). Rough cost on one H100, an estimate and not a measurement: the
two AGSM trainings (about 7 and 25 GPU-hours, shared with Table 1), then 10 x 700 edits (~5 s each on SD1.5, ~10 s
on SD3 at 1024 px: about 15 GPU-hours).

Smoke (CPU, seconds; toy models, a two-entry PIE-Bench look-alike, tiny CLIP / LPIPS / DINO):

    python scripts/reproduce/pie_bench_editing.py --smoke --out /tmp/pie
"""
from __future__ import annotations

from pathlib import Path

import _common
import _smoke


def main(argv=None) -> None:
    from agsm.report.paper_tables import EDITORS, pie_numbers

    p = _common.parser(*__doc__.split("\n\n", 1))
    p.add_argument("--model", action="append", default=[], metavar="ARCH=DIR", help="sd15= and/or sd3=")
    p.add_argument("--tokens", action="append", default=[], metavar="ARCH=FILE",
                   help="use this token file instead of training one, e.g. sd3=runs/sd3-agsm/soft_tokens.safetensors")
    p.add_argument("--editors", help=f"a comma-separated subset of {','.join(e for d in EDITORS.values() for e in d)}")
    p.add_argument("--pie", help="PIE-Bench's data folder (mapping_file.json, annotation_images/)")
    p.add_argument("--pie-num", type=int, help="only the first N entries (default: all 700)")
    p.add_argument("--clip", help="CLIP weights folder (openai/clip-vit-large-patch14)")
    p.add_argument("--lpips", help="LPIPS weights folder (agsm.metrics.lpips_net's layout)")
    p.add_argument("--dino", help="DINO ViT folder (facebook/dino-vitb8) for the structure distance")
    args = p.parse_args(argv)
    _common.settle(args, tuple(EDITORS), _smoke_inputs)
    models = _common.named_paths(args.model, "--model", EDITORS)
    given = _common.named_paths(args.tokens, "--tokens", EDITORS)
    wanted = args.editors.split(",") if args.editors else [e for d in EDITORS.values() for e in d]
    unknown = sorted(set(wanted) - {e for d in EDITORS.values() for e in d})
    if unknown:
        raise SystemExit(f"--editors {args.editors!r}: {unknown} are not among the paper's editors")
    if not models or not args.pie:
        raise SystemExit("give at least one --model ARCH=DIR and --pie DIR (or --smoke)")

    from agsm.eval.pie_data import read_mapping

    read_mapping(args.pie, None, args.pie_num)  # the evaluation's inputs are checked before hours of training
    for option, path in (("--clip", args.clip), ("--lpips", args.lpips), ("--dino", args.dino)):
        if path and not Path(path).exists():
            raise FileNotFoundError(f"{option} {path} does not exist")
    plan = _common.Plan("pie", args.out)
    weights = {"clip": args.clip, "lpips": args.lpips, "dino": args.dino}
    options = {"steps": _smoke.EDIT_STEPS} if args.smoke else {}  # real runs: each editor's paper settings
    ours, sources = {}, {}
    for arch, model in models.items():
        editors = [e for e in EDITORS[arch] if e in wanted]
        if not editors:
            continue
        tokens = given.get(arch) or _common.train_run(plan, args, arch, f"{arch}-agsm", model)
        for editor in editors:
            for kind, token_file in (("none", None), ("tokens", tokens)):
                name = f"{arch}-{editor}" + ("-tokens" if token_file else "")
                results = _common.pie_eval(plan, args, args.out / "pie" / name, name, model=model, tokens=token_file,
                                           method=editor, options=options, pie=args.pie, weights=weights)
                ours[f"{arch}/{editor}/{kind}"] = pie_numbers(results)
                sources[f"{arch}/{editor}/{kind}"] = {"results": str(args.out / "pie" / name / "results.json"),
                                                      "tokens": str(token_file) if token_file else None}
    _common.write("pie", ours, sources, args.out)


def _smoke_inputs(args, inputs) -> None:
    args.model = [f"{arch}={path}" for arch, path in inputs["models"].items()]
    args.pie = str(inputs["pie"])
    args.clip, args.lpips, args.dino = str(inputs["metrics"]["clip"]), str(inputs["lpips"]), str(inputs["dino"])


if __name__ == "__main__":
    _common.run(main)
