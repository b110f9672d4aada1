"""`agsm edit`: edit one image with a local pipeline (and soft tokens), write the PNG and edit.json.

    agsm edit --model src/agsm/shapes/models/sd15-tiny --tokens runs/demo/sd15/agsm --image scene.png \
        --source-prompt "a red circle" --target-prompt "a blue circle" --out runs/edit

Method options left out take the method's defaults (FlowEdit for SD3, DDIM inversion for SD1.5/SDXL).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

OPTION_FLAGS = {  # flag -> options field (None values are left to the method's defaults)
    "steps": int, "source_guidance": float, "target_guidance": float, "n_max": int, "n_min": int, "n_avg": int}


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    """Method and option flags shared by `agsm edit`, `agsm eval edit-shapes` and `agsm eval pie-bench` (the
    tokens' --uncond-tokens comes with --model and --tokens: cli_options.add_model_options)."""
    from .registry import EDITORS

    parser.add_argument("--method", choices=sorted(EDITORS),
                        help="default: flowedit for SD3, ddim_inversion for SD1.5/SDXL")
    parser.add_argument("--steps", type=int, help="sampling steps (default 50)")
    parser.add_argument("--source-guidance", type=float,
                        help="CFG for the source prompt (FlowEdit 3.5; DDIM, PnP, MasaCtrl, direct inversion: "
                             "during inversion, 1)")
    parser.add_argument("--target-guidance", type=float, help="CFG for the target prompt (FlowEdit 13.5; DDIM 7.5)")
    parser.add_argument("--n-max", type=int, help="FlowEdit: steps that edit (default 33 of 50, scaled with --steps)")
    parser.add_argument("--n-min", type=int, help="FlowEdit: final steps that sample the target directly (0)")
    parser.add_argument("--n-avg", type=int, help="FlowEdit: noise draws averaged per step (1)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="any other option of the method's options dataclass (docs/editing.md), e.g. "
                             "--option tau_f=0.8 (pnp), --option start_step=4 (masactrl); repeatable")


def options_from_args(args) -> dict:
    """The method options given on the command line: the named flags, then every --option NAME=VALUE (as text;
    edit_options converts it to the field's type)."""
    options = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name, None) is not None}
    for item in getattr(args, "option", None) or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--option {item!r} is not NAME=VALUE, e.g. --option n_avg=2")
        options[name.strip().replace("-", "_")] = value.strip()
    return options


def run_edit(args, extra) -> None:
    from PIL import Image

    from ..utils.atomic_files import write_json
    from ..utils.devices import resolve_device_and_dtype
    from ..pipelines import load_soft_tokens, pipeline_architecture
    from ..sample import load_pipeline
    from . import edit, edit_options

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm edit -h")
    device, dtype = resolve_device_and_dtype(args.device, args.dtype)  # a device this machine lacks fails first
    image_path = Path(args.image)
    if not image_path.is_file():
        raise FileNotFoundError(f"no image at {image_path}; pass --image FILE (PNG or JPEG)")
    image = Image.open(image_path).convert("RGB")
    if args.size:
        image = image.resize((args.size, args.size), Image.Resampling.LANCZOS)
    pipe = load_pipeline(args.model, device, dtype)
    method, opts = edit_options(pipe, args.method, **options_from_args(args))  # validate before any work
    if args.tokens:
        load_soft_tokens(pipe, args.tokens, uncond_tokens=args.uncond_tokens)
    start = time.perf_counter()
    edited = edit(pipe, image, args.source_prompt, args.target_prompt, seed=args.seed, method=method,
                  **dataclasses.asdict(opts))
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    edited.save(out / "edited.png")
    record = {"model": str(args.model), "architecture": pipeline_architecture(pipe),
              "tokens": str(args.tokens) if args.tokens else None,
              "uncond_tokens": args.uncond_tokens if args.tokens else None, "image": str(image_path),
              "size": [image.width, image.height], "source_prompt": args.source_prompt,
              "target_prompt": args.target_prompt, "seed": args.seed, "method": method,
              "options": dataclasses.asdict(opts), "output": "edited.png", "seconds": round(seconds, 2),
              "device": str(pipe.device), "dtype": str(pipe.dtype).removeprefix("torch.")}
    write_json(out / "edit.json", record)
    print(f"wrote edited.png and edit.json to {out} ({method}, {seconds:.1f} s)")


def add_commands(subparsers) -> None:
    """Register `agsm edit` on the top-level sub-command parsers."""
    from ..cli_options import add_device_options, add_model_options

    from .registry import EDITORS

    # Every registered editor, so the top-level help stays complete as editors are added.
    p = subparsers.add_parser("edit", help=f"edit an image towards a target prompt ({', '.join(EDITORS)})")
    add_model_options(p)
    p.add_argument("--image", required=True, help="the image to edit (PNG or JPEG)")
    p.add_argument("--source-prompt", required=True, help="what the image shows")
    p.add_argument("--target-prompt", required=True, help="what it should show after the edit")
    p.add_argument("--out", required=True, help="folder for edited.png and edit.json")
    p.add_argument("--seed", type=int, default=0, help="FlowEdit's noise draws (DDIM inversion is deterministic)")
    p.add_argument("--size", type=int, help="resize the image to SIZE x SIZE first")
    add_device_options(p)
    add_edit_options(p)
    p.set_defaults(run=run_edit)
