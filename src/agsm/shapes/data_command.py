"""`agsm shapes data`: a ShapesWorld training set, the image folder `agsm train --data.path` reads.

    agsm shapes data --n 2000 --out data/shapes [--seed 1]
    agsm train --model.path src/agsm/shapes/models/sd15-tiny --data.path data/shapes

Writes out/000000.png ... (64x64) and out/metadata.jsonl lines {"file_name", "text", "category"}
(shapes.dataset.write_training_set). The suite's held-out compositions are left out unless --include-suite, so
`agsm eval shapes` still measures generalisation. The default seed 1 is the demo's: `--n 2000` gives its data.
"""
from __future__ import annotations

DEMO_SEED = 1  # demo.py writes its training sets with seed 1


def add_command(shapes_subparsers) -> None:
    """`agsm shapes data` under the `agsm shapes` tools."""
    cmd = shapes_subparsers.add_parser("data", help="write a ShapesWorld training set (an image folder with "
                                                    "metadata.jsonl) for agsm train --data.path")
    cmd.add_argument("--n", type=int, required=True, help="images to render (categories taken in turn)")
    cmd.add_argument("--out", required=True, help="a new or empty folder (or one this command wrote before)")
    cmd.add_argument("--seed", type=int, default=DEMO_SEED,
                     help=f"seeds the scenes and captions (default {DEMO_SEED}, the demo's training sets)")
    cmd.add_argument("--include-suite", action="store_true",
                     help="also draw the evaluation suite's held-out position / colour-attribution compositions")
    cmd.set_defaults(run=_run)


def _run(args, extra) -> None:
    from .dataset import write_training_folder

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm shapes data -h")
    if args.n < 1:
        raise ValueError(f"--n {args.n} must be >= 1 (images to render)")
    out = write_training_folder(args.out, args.n, args.seed, exclude_suite=not args.include_suite)
    print(f"wrote {args.n} images and metadata.jsonl to {out}; train on them with "
          f"agsm train --model.path src/agsm/shapes/models/sd15-tiny --data.path {out}")
