r"""Pretrain a tiny ShapesWorld base model, resumably, and save it as a stock diffusers pipeline.

    python -m agsm.shapes.pretrain --out src/agsm/shapes/models/sd15-tiny --work runs/pretrain-sd15 \
        --steps-vae 3000 --steps-unet 10000 --seed 0
    python -m agsm.shapes.pretrain --arch sd3 --out src/agsm/shapes/models/sd3-tiny --work runs/pretrain-sd3 \
        --steps 30000 --seed 0 --device cuda --batch 256 --bf16
    python -m agsm.shapes.pretrain --arch sdxl --out src/agsm/shapes/models/sdxl-tiny --work runs/pretrain-sdxl \
        --steps 10000 --seed 0
    agsm shapes pretrain ...              (the same options; `agsm shapes pretrain-sd3 ...` adds --arch sd3)

--arch sd15 (the default): the tiny SD1.5 architecture, a StableDiffusionPipeline. Stages: VAE; latent cache;
UNet + CLIP text encoder, epsilon loss, 10% empty captions, EMA weights exported. --init-from PIPELINE continues
from a trained pipeline (its VAE kept, the VAE stage skipped), e.g. with --position-repeats N (position scenes N
times as often) and --restate-share P (a scene shown with another true caption, restate.py, with chance P).
--arch sd3: the tiny SD3 architecture (MM-DiT, two CLIP encoders, no T5), a StableDiffusion3Pipeline, by flow
matching on the frozen sd15-tiny VAE's latents; --device, --bf16 and --compile for a GPU.
--arch sdxl: the tiny SDXL architecture (UNet with pooled text + time ids, two CLIP encoders), a
StableDiffusionXLPipeline, with sd15's epsilon recipe on the frozen sd15-tiny VAE's latents (pretraining/sdxl.py).
All three: rerun the same command after a kill; it resumes from the last atomic checkpoint in --work (and refuses one
made with other weight-changing settings). Every draw of step k comes from a generator seeded by (seed, stage, k),
so a resumed run equals an uninterrupted one. train_info.json records the command, settings, wall time and loss
curve.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .config import SD15_VAE, SD3Config, SD15Config, SDXLConfig

COMMON = ("seed", "n_images", "checkpoint_every", "log_every", "threads")
ONLY = {
    "sd15": ("steps_vae", "steps_unet", "init_from", "lr_unet", "position_repeats", "restate_share"),
    "sd3": ("steps", "device", "batch", "bf16", "compile", "lr", "width", "layers", "vae"),
    "sdxl": ("steps", "device", "batch", "lr", "vae"),
}
CONFIGS = {"sd15": SD15Config, "sd3": SD3Config, "sdxl": SDXLConfig}
HELP = {
    "init_from": "continue from this pipeline folder (its VAE kept)",
    "position_repeats": "position scenes per cycle of categories",
    "restate_share": "chance per step of showing a scene's restated caption (restate.py)",
    "device": "cpu or cuda",
    "bf16": "bf16 autocast (weights and optimiser stay fp32)",
    "compile": "torch.compile text encoders + transformer as one graph",
    "vae": "vae/ folder of a trained pipeline (frozen, copied)",
    "threads": "CPU threads for torch",
}
TYPES = {"steps_vae": int, "steps_unet": int, "steps": int, "seed": int, "n_images": int, "checkpoint_every": int,
         "log_every": int, "threads": int, "position_repeats": int, "batch": int, "width": int, "layers": int,
         "lr_unet": float, "restate_share": float, "lr": float, "init_from": str, "device": str, "vae": str}


def _help(name: str) -> str:
    """The option's help with the architectures that take it and their defaults, e.g. 'sd3, sdxl: ... (default
    sd3 30000, sdxl 10000)'."""
    text = HELP.get(name, "")
    arches = [a for a in CONFIGS if name in COMMON or name in ONLY[a]]
    defaults = [(a, getattr(CONFIGS[a], name)) for a in arches]
    shown = ", ".join(f"{a} {d}" for a, d in defaults if d is not None and not isinstance(d, bool))
    head = text if name in COMMON else f"{', '.join(arches)}: {text}".rstrip(": ")
    return (head + (f" (default {shown})" if shown else "")).strip()


def build_parser(prog: str = "python -m agsm.shapes.pretrain") -> argparse.ArgumentParser:
    """Every option of every architecture; unset ones take the architecture's default (config.py). `prog` is the
    command the usage line names (`agsm shapes pretrain` when the agsm command forwards here)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=tuple(CONFIGS), default="sd15", help=f"the architecture: {', '.join(CONFIGS)} (default sd15)")
    parser.add_argument("--out", required=True, help="pipeline folder to write")
    parser.add_argument("--work", default=None, help="checkpoint folder (default: runs/pretrain-NAME)")
    for name in dict.fromkeys(COMMON + sum(ONLY.values(), ())):
        flag = "--" + name.replace("_", "-")
        if name in ("bf16", "compile"):
            parser.add_argument(flag, action="store_true", default=None, help=_help(name))
        else:
            parser.add_argument(flag, type=TYPES[name], default=None, help=_help(name))
    return parser


def options(args: argparse.Namespace) -> dict:
    """The given options of args.arch (not --out/--work); ValueError for an option of another architecture."""
    mine = COMMON + ONLY[args.arch]
    wrong = [n for n in dict.fromkeys(sum(ONLY.values(), ())) if n not in mine and getattr(args, n) is not None]
    if wrong:
        flags = ", ".join("--" + n.replace("_", "-") for n in wrong)
        owners = sorted({a for n in wrong for a in ONLY if n in ONLY[a]})
        raise ValueError(f"{flags}: only for --arch {' or '.join(owners)}, and this run is --arch {args.arch}")
    return {n: getattr(args, n) for n in COMMON + ONLY[args.arch] if getattr(args, n) is not None}


def sd3_command(args: argparse.Namespace, given: dict) -> str:
    """The run as one explicit command line: every sd3 option spelled out (the default VAE left out)."""
    value = lambda name: given.get(name, getattr(SD3Config, name))  # noqa: E731 - given, else the default
    flags = [f"--arch sd3 --out {shlex.quote(args.out)}", f"--steps {value('steps')}", f"--seed {value('seed')}"]
    flags += [f"--work {shlex.quote(args.work)}"] if args.work else []
    for name in ("device", "batch", "bf16", "compile", "lr", "n_images", "width", "layers", "checkpoint_every",
                 "log_every", "vae", "threads"):
        if name == "vae" and Path(value(name)) == SD15_VAE:
            continue  # the default, not a machine-specific path
        if isinstance(value(name), bool):
            flags += [f"--{name.replace('_', '-')}"] if value(name) else []
        else:
            flags.append(f"--{name.replace('_', '-')} {shlex.quote(str(value(name)))}")
    return "python -m agsm.shapes.pretrain " + " ".join(flags)


def run(args: argparse.Namespace, argv: list[str]) -> Path:
    """Train with the parsed options; returns the pipeline folder."""
    given = options(args)
    if args.arch == "sdxl":
        from .sdxl import pretrain

        command = "python -m agsm.shapes.pretrain " + " ".join(shlex.quote(a) for a in argv)
        steps, seed = given.pop("steps", SDXLConfig.steps), given.pop("seed", SDXLConfig.seed)
        return pretrain(args.out, steps, seed, work_dir=args.work, command=command, **given)
    if args.arch == "sd3":
        from .sd3 import pretrain

        command = sd3_command(args, given)
        steps, seed = given.pop("steps", SD3Config.steps), given.pop("seed", SD3Config.seed)
        return pretrain(args.out, steps, seed, work_dir=args.work, command=command, **given)
    from .sd15 import pretrain

    command = "python -m agsm.shapes.pretrain " + " ".join(shlex.quote(a) for a in argv)
    steps_vae, steps_unet = given.pop("steps_vae", SD15Config.steps_vae), given.pop("steps_unet", SD15Config.steps_unet)
    seed = given.pop("seed", SD15Config.seed)
    return pretrain(args.out, steps_vae, steps_unet, seed, work_dir=args.work, command=command, **given)


def record_sampler(folder: Path, arch: str) -> None:
    """Ship the recipe's sampler with the model (sampler.json), so every agsm command draws it as it was scored."""
    from ..generate import SHAPESWORLD_SAMPLER_WHY, SHAPESWORLD_SAMPLERS
    from ...backbones.sampler_defaults import write_model_sampler

    if arch in SHAPESWORLD_SAMPLERS:
        sampler = SHAPESWORLD_SAMPLERS[arch]
        write_model_sampler(folder, sampler["steps"], sampler["guidance"], SHAPESWORLD_SAMPLER_WHY)


def main(argv: list[str] | None = None, prog: str = "python -m agsm.shapes.pretrain") -> None:
    """`python -m agsm.shapes.pretrain`; errors in the options end the run with one line naming them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        record_sampler(run(args, argv), args.arch)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"pretrain: {exc}") from None
