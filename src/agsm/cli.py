"""The `agsm` command: a thin shell over the library.

A user error (bad input, a full disk, a diverged run ...) prints one line, `agsm <command>: <message>`, and
exits with status 2; `--debug` anywhere on the line (`agsm --debug train ...`, `agsm train ... --debug`) shows the
traceback instead.

Importing this module stays light (no torch, no diffusers): `agsm --version` answers without building the parser,
and every command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import logging
import sys

# The errors a user can fix; anything else is a bug and keeps its traceback. OSError covers missing or
# unwritable paths and a full disk; AgsmError our own expected failures (agsm.errors).
USER_ERRORS = (ValueError, OSError)


def _train(args, extra):
    from .training.config import load_config
    from .utils.devices import accelerate_device
    from .training.loop import train

    config, resume = args.config, args.resume or False
    if resume not in (False, "latest") and config is None:
        # `--resume RUN` alone continues that run with its own config.yaml, in its own folder.
        from .training.checkpoint import run_of
        from .training.run_folder import CONFIG_NAME

        run, _ = run_of(resume)
        if not (run / CONFIG_NAME).is_file():
            raise ValueError(f"--resume {resume}: {run} holds no {CONFIG_NAME}; give the run's config with --config")
        config, extra = run / CONFIG_NAME, ["--train.output_dir", str(run), *extra]
    if any(arg == "--dtype" or arg.startswith("--dtype=") for arg in extra):
        raise ValueError("agsm train has no --dtype: its precision is the config's train.mixed_precision, e.g. "
                         "--train.mixed_precision bf16 (no = float32, bf16, fp16)")
    from .data.errors import ImagesTooSmallError

    with accelerate_device(args.device):
        try:
            train(load_config(config, extra), resume=resume, overwrite=args.overwrite)
        except ImagesTooSmallError as exc:  # name the --config or flag that set the size, and the flags that fix it
            from .data.size_advice import explain
            from .training.config import parse_overrides, read_config_file

            file_options = read_config_file(config) if config is not None else {}
            raise ValueError(explain(exc, config, file_options, parse_overrides(extra))) from None


class _TrainHelp(argparse.Action):
    """`agsm train -h`: the command's options, then every config option, generated from the config dataclasses.

    The config options are listed here only, never added to the parser: they stay `--section.option value`
    pairs that config.parse_overrides reads, with its own checks and messages."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .training.config import option_help, shipped_configs
        from .training.option_names import alias_help

        parser.epilog = (f"shipped configs (--config NAME): {', '.join(shipped_configs())}\n"
                         "config options override the --config file: --section.option value or --section.option=value")
        for section, about, options in option_help():
            group = parser.add_argument_group(f"{section} options", about)
            for flag, metavar, text in options:
                # display only, as a positional named like the option: a flag may appear under several method
                # headings (--method.temperature of agsm and of softrepa), which argparse refuses for options
                group.add_argument(f"{section}:{flag}", metavar=f"{flag} {metavar}", nargs="?",
                                   help=text.replace("%", "%%"))
        aliases = parser.add_argument_group(
            "diffusers option names", "the training scripts' names of the common options, read as agsm's (also with "
            "dashes: --learning-rate); giving both spellings of one option is an error")
        for alias, target in alias_help():
            aliases.add_argument(f"alias:{alias}", metavar=alias, nargs="?", help=f"= {target}")
        parser.print_help()
        parser.exit()


def _export(args, extra):
    from .training.export import export_checkpoint

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm export -h")
    path = export_checkpoint(args.run_folder, args.out, checkpoint=args.checkpoint, weights=args.weights)
    print(f"wrote {path}")


def _sample(args, extra):
    from .backbones.variants import variant_from_args
    from .guidance.cli import align_from_args
    from .sample import read_prompts, sample
    from .utils.counts import count

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm sample -h")
    paths = sample(args.model, read_prompts(args.prompt, args.prompts), args.out, seed=args.seed,
                   tokens=args.tokens, steps=args.steps, guidance=args.guidance, size=args.size,
                   uncond_tokens=args.uncond_tokens, device=args.device, dtype=args.dtype,
                   negative_prompt=args.negative_prompt, images_per_prompt=args.images_per_prompt,
                   batch_size=args.batch_size, token_scale=args.token_scale, variant=variant_from_args(args),
                   overwrite=args.overwrite, align=align_from_args(args))
    print(f"wrote {count(len(paths), 'image')} and run.json to {args.out}")


def _eval_shapes(args, extra):
    from .backbones.variants import variant_from_args
    from .eval.shapes import evaluate_shapes, print_summary

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm eval shapes -h")
    result = evaluate_shapes(args.model, args.out, tokens=args.tokens, prompts=args.prompts,
                             images_per_prompt=args.images_per_prompt, seed=args.seed, steps=args.steps,
                             guidance=args.guidance, uncond_tokens=args.uncond_tokens,
                             per_category=args.per_category, batch_size=args.batch_size, device=args.device,
                             dtype=args.dtype, variant=variant_from_args(args), overwrite=args.overwrite)
    print(print_summary(result))
    print(f"wrote results.json and grids to {args.out}")


def _shapes_pretrain(args, extra):
    from .shapes.pretraining.cli import main as pretrain_main

    pretrain_main(["--arch", "sd3", *extra] if args.tool == "pretrain-sd3" else extra, prog=f"agsm shapes {args.tool}")


def build_parser() -> argparse.ArgumentParser:
    from .cli_options import (GUIDANCE_HELP, HUB_TOKENS_HELP, SHAPES_PIPELINE_HELP, STEPS_HELP, add_device_options,
                              add_model_options, add_overwrite_option, add_sampler_options,
                              add_variant_options)
    from .utils.devices import TRAIN_DEVICE_HELP

    parser = argparse.ArgumentParser(prog="agsm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"agsm {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train soft tokens; extra --section.option value pairs override the config",
                           add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                           usage="%(prog)s [-h] [--config NAME|FILE] [--resume [latest|PATH]] [--overwrite] "
                                 "[--section.option VALUE ...]")
    train.add_argument("-h", "--help", action=_TrainHelp, help="show this help, with every config option, and exit")
    train.add_argument("--config", metavar="NAME|FILE",
                       help="a YAML config file, or the name of a shipped one (sd15, sd3 ...: listed below)")
    train.add_argument("--resume", nargs="?", const="latest", metavar="latest|PATH",
                       help="continue from the latest complete checkpoint (also: --resume latest), or from PATH: the "
                            "run folder or one of its checkpoints/checkpoint-N; without --config, PATH's run "
                            "continues with its own config.yaml")
    train.add_argument("--overwrite", action="store_true",
                       help="start over in an output folder that holds a run (deletes its checkpoints, tokens and "
                            "logs; keeps its data cache, whose entries are keyed by their inputs)")
    add_device_options(train, dtype=False, device_help=TRAIN_DEVICE_HELP)
    train.set_defaults(run=_train)

    exp = sub.add_parser("export", help="write a token file from any checkpoint of a run")
    # dest run_folder: `run` is the attribute main() calls.
    exp.add_argument("--run", dest="run_folder", required=True, metavar="RUN_FOLDER",
                     help="the run folder (train.output_dir of `agsm train`)")
    exp.add_argument("--checkpoint", default="latest", metavar="checkpoint-N|latest",
                     help="which of the run's checkpoints (default: latest)")
    exp.add_argument("--weights", choices=("online", "ema"),
                     help="the trained tokens or their moving average (default: the run's train.export_tokens)")
    exp.add_argument("--out", required=True, help="folder to write soft_tokens.safetensors into")
    exp.set_defaults(run=_export)

    smp = sub.add_parser("sample", help="generate images with a stock pipeline and soft tokens")
    add_model_options(smp, tokens_help=HUB_TOKENS_HELP)
    smp.add_argument("--prompt", help="the prompt (or --prompts FILE)")
    smp.add_argument("--prompts", help="a text file, one prompt per line (or --prompt TEXT)")
    smp.add_argument("--negative-prompt", help="what the images should not show (the unconditional branch's text)")
    smp.add_argument("--out", required=True,
                     help="folder for the images (p<prompt>_i<image>.png) and run.json; a folder holding another "
                          "run's images is refused unless --overwrite")
    smp.add_argument("--overwrite", action="store_true",
                     help="delete the images (and run.json) already in --out before drawing")
    smp.add_argument("--images-per-prompt", type=int, default=1, help="images of each prompt (default 1)")
    smp.add_argument("--batch-size", type=int, default=4,
                     help="images per pipeline call (default 4); the images do not depend on it")
    smp.add_argument("--seed", type=int, default=0,
                     help="image j of prompt p uses seed + p * images-per-prompt + j (default 0)")
    add_sampler_options(smp, size=True)
    smp.add_argument("--token-scale", type=float, default=1.0,
                     help="how strongly the tokens act, with --tokens: 0 = the base model, 1 = as trained (default)")
    add_variant_options(smp)
    add_device_options(smp)
    from .guidance.cli import add_align_options
    add_align_options(smp)  # --align-guidance GAMMA and its --align-* options
    smp.set_defaults(run=_sample)

    ev = sub.add_parser("eval", help="evaluate a model (and tokens)")
    ev_sub = ev.add_subparsers(dest="suite", required=True)
    shapes = ev_sub.add_parser("shapes", help="the ShapesWorld suite, judged exactly")
    add_model_options(shapes, model_help=SHAPES_PIPELINE_HELP)
    shapes.add_argument("--prompts", help="a suite JSONL (default: the shipped one)")
    shapes.add_argument("--images-per-prompt", type=int, default=1, help="images of each prompt (default 1)")
    shapes.add_argument("--seed", type=int, default=0, help="added to each suite line's own seed (default 0)")
    add_sampler_options(shapes, steps_help=STEPS_HELP + "; the shipped models recommend 25",
                        guidance_help=GUIDANCE_HELP + "; the shipped models recommend sd15 6, sd3 5")
    shapes.add_argument("--per-category", type=int, help="only the first N prompts of each category")
    shapes.add_argument("--batch-size", type=int, default=50,
                        help="images per pipeline call (default 50); a killed run resumes at this grain")
    shapes.add_argument("--out", required=True, help="folder for results.json, the grids, images/ and manifest")
    add_variant_options(shapes)
    add_device_options(shapes)
    add_overwrite_option(shapes)
    shapes.set_defaults(run=_eval_shapes)
    from .eval import coco, edit_shapes, geneval, pie_bench
    from .report import cli as report_cli

    for module in (coco, geneval, pie_bench, edit_shapes):
        module.add_commands(ev_sub)
    report_cli.add_report_command(sub)
    from .editing import cli as editing_cli

    editing_cli.add_commands(sub)
    from .tokens import import_command

    import_command.add_command(sub)
    from .study import ceiling_cli
    ceiling_cli.add_command(sub)  # agsm ceiling

    world = sub.add_parser("shapes", help="ShapesWorld tools")
    world_sub = world.add_subparsers(dest="tool", required=True)
    pre = world_sub.add_parser("pretrain", add_help=False,
                               help="train a tiny base model: --arch sd15 (default), sd3 or sdxl; options: -h")
    pre.set_defaults(run=_shapes_pretrain)
    pre3 = world_sub.add_parser("pretrain-sd3", add_help=False, help="the same as `agsm shapes pretrain --arch sd3`")
    pre3.set_defaults(run=_shapes_pretrain)
    from .preference import shapes_pairs

    shapes_pairs.add_command(world_sub)
    from .shapes import data_command

    data_command.add_command(world_sub)
    return parser


DEBUG_FLAG = "--debug"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _asks_version(argv):  # before the parser: building it imports every command's modules (torch among them)
        print(f"agsm {_version()}")
        raise SystemExit(0)
    # --debug is taken wherever it stands: after the subcommand argparse would hand it to the command (train's
    # config overrides, a sub-tool's own parser), which knows nothing of it.
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    from .errors import AgsmError

    args, extra = build_parser().parse_known_args(argv)
    args.debug = args.debug or debug
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


def _asks_version(argv: list[str]) -> bool:
    """`agsm --version` (possibly after other top-level flags such as --debug): --version before any command word."""
    for arg in argv:
        if arg == "--version":
            return True
        if not arg.startswith("-"):
            return False  # a command word: what follows is that command's
    return False


def _version() -> str:
    """The installed package's version (pyproject.toml), as pip reports it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agsm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed: pip install -e . to record a version)"


def _command_name(args) -> str:
    """'train', 'eval shapes', 'shapes pretrain' ...: the words the user typed to pick the command."""
    sub = getattr(args, "suite", None) or getattr(args, "tool", None)
    return f"{args.command} {sub}" if sub else args.command


if __name__ == "__main__":
    main(sys.argv[1:])
