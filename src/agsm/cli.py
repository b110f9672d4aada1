"""The `agsm` command: a thin shell over the library.

A user error (bad input, a full disk, a diverged run ...) prints one line, `agsm <command>: <message>`, and
exits with status 2; `agsm --debug <command> ...` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import logging
import sys

# The errors a user can fix; anything else is a bug and keeps its traceback. OSError covers missing or
# unwritable paths and a full disk; AgsmError our own expected failures (agsm.errors).
USER_ERRORS = (ValueError, OSError)


def _train(args, extra):
    from .config import load_config
    from .train import train

    train(load_config(args.config, extra), resume=args.resume, overwrite=args.overwrite)


def _sample(args, extra):
    from .sample import read_prompts, sample

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm sample -h")
    paths = sample(args.model, read_prompts(args.prompt, args.prompts), args.out, seed=args.seed,
                   tokens=args.tokens, steps=args.steps, guidance=args.guidance, size=args.size,
                   uncond_tokens=args.uncond_tokens, device=args.device)
    print(f"wrote {len(paths)} images and run.json to {args.out}")


def _eval_shapes(args, extra):
    from .eval.shapes import evaluate_shapes, print_summary

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm eval shapes -h")
    result = evaluate_shapes(args.model, args.out, tokens=args.tokens, prompts=args.prompts,
                             images_per_prompt=args.images_per_prompt, seed=args.seed, steps=args.steps,
                             guidance=args.guidance, uncond_tokens=args.uncond_tokens,
                             per_category=args.per_category, batch_size=args.batch_size)
    print(print_summary(result))
    print(f"wrote results.json and grids to {args.out}")


def _shapes_pretrain(args, extra):
    from .shapes.pretraining.cli import main as pretrain_main

    pretrain_main(["--arch", "sd3", *extra] if args.tool == "pretrain-sd3" else extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agsm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train soft tokens; extra --section.option value pairs override the config")
    train.add_argument("--config", help="YAML config (see configs/)")
    train.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="start over in an output folder that holds a run (deletes its checkpoints and tokens)")
    train.set_defaults(run=_train)

    smp = sub.add_parser("sample", help="generate images with a stock pipeline and soft tokens")
    smp.add_argument("--model", required=True, help="local diffusers pipeline folder")
    smp.add_argument("--tokens", help="soft_tokens.safetensors (or its folder); omit for the base model")
    smp.add_argument("--prompt")
    smp.add_argument("--prompts", help="a text file, one prompt per line")
    smp.add_argument("--out", required=True)
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--steps", type=int)
    smp.add_argument("--guidance", type=float)
    smp.add_argument("--size", type=int)
    smp.add_argument("--uncond-tokens", default="positive", choices=("positive", "negative", "none"))
    smp.add_argument("--device", default="cpu")
    smp.set_defaults(run=_sample)

    ev = sub.add_parser("eval", help="evaluate a model (and tokens)")
    ev_sub = ev.add_subparsers(dest="suite", required=True)
    shapes = ev_sub.add_parser("shapes", help="the ShapesWorld suite, judged exactly")
    shapes.add_argument("--model", required=True)
    shapes.add_argument("--tokens")
    shapes.add_argument("--prompts", help="a suite JSONL (default: the shipped one)")
    shapes.add_argument("--images-per-prompt", type=int, default=1)
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--steps", type=int, help="default: the model's ShapesWorld sampler (25)")
    shapes.add_argument("--guidance", type=float, help="default: the model's ShapesWorld sampler (sd15 6, sd3 5)")
    shapes.add_argument("--uncond-tokens", default="positive", choices=("positive", "negative", "none"))
    shapes.add_argument("--per-category", type=int, help="only the first N prompts of each category")
    shapes.add_argument("--batch-size", type=int, default=50,
                        help="images per pipeline call (default 50); a killed run resumes at this grain")
    shapes.add_argument("--out", required=True)
    shapes.set_defaults(run=_eval_shapes)
    from .eval import coco, edit_shapes, geneval, pie_bench
    from .report import cli as report_cli

    for module in (coco, geneval, pie_bench, edit_shapes):
        module.add_commands(ev_sub)
    report_cli.add_report_command(sub)
    from .editing import cli as editing_cli

    editing_cli.add_commands(sub)

    world = sub.add_parser("shapes", help="ShapesWorld tools")
    world_sub = world.add_subparsers(dest="tool", required=True)
    pre = world_sub.add_parser("pretrain", add_help=False,
                               help="train a tiny base model: --arch sd15 (default) or sd3; options: -h")
    pre.set_defaults(run=_shapes_pretrain)
    pre3 = world_sub.add_parser("pretrain-sd3", add_help=False, help="the same as `agsm shapes pretrain --arch sd3`")
    pre3.set_defaults(run=_shapes_pretrain)
    return parser


def main(argv: list[str] | None = None) -> None:
    from .errors import AgsmError

    args, extra = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("accelerate", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args.run(args, extra)
    except (*USER_ERRORS, AgsmError) as exc:
        if args.debug:
            raise
        print(f"agsm {_command_name(args)}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _command_name(args) -> str:
    """'train', 'eval shapes', 'shapes pretrain' ...: the words the user typed to pick the command."""
    sub = getattr(args, "suite", None) or getattr(args, "tool", None)
    return f"{args.command} {sub}" if sub else args.command


if __name__ == "__main__":
    main(sys.argv[1:])
