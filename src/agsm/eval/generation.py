"""Shared pieces of the generation-based evaluations (COCO, GenEval export, PIE-Bench).

A model folder (+ optional soft tokens) becomes a pipeline with the model's recommended sampler, else docs/method.md's
evaluation sampler for its architecture (agsm.backbones.sampler_defaults), on --device in --dtype (agsm.utils.devices).
The images are drawn by agsm.draw (the one generation loop: every image has its own seed, so any single image can
be redrawn) and written atomically (agsm.utils.atomic_files.write_png) into a folder that resumes after a kill
(agsm.eval.resumable: the one resume policy). Also here: what identifies a run (run_config), its row name, and the
CLI adapters' shared part (model_keywords, report_command).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..backbones.variants import variant_from_args
from ..cli_options import (add_device_options, add_model_options, add_overwrite_option, add_sampler_options,
                           add_variant_options)
from ..utils.devices import dtype_name, resolve_device_and_dtype


@dataclass(frozen=True)
class Sampler:
    steps: int
    guidance: float
    size: int


def add_model_args(parser, tokens: bool = True) -> None:
    """The options of the generation-based eval commands: the model and sampler groups, --seed, the device and
    variant groups (agsm.cli_options)."""
    add_model_options(parser, tokens=tokens, uncond_tokens=tokens)
    add_sampler_options(parser, size=True)
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    add_device_options(parser)
    add_variant_options(parser)  # a preference-tuned denoiser or a LoRA, evaluated like the stock model
    add_overwrite_option(parser)


def report_command(command: str, evaluate, markdown, keywords):
    """An argparse handler (args, extra): the thin CLI adapter that runs `evaluate(**keywords(args))` and prints
    its one-row results table (every runner takes keywords; `keywords` turns the parsed options into them)."""
    def run(args, extra) -> None:
        if extra:
            raise ValueError(f"agsm eval {command}: unknown arguments {extra}")
        result = evaluate(**keywords(args))
        print(markdown([result]))
        print(f"wrote results.json, results.md and scores.jsonl to {args.out}")
    return run


def model_keywords(args, tokens: bool = True) -> dict:
    """The runner keywords of add_model_args' options (the CLI adapters' shared part)."""
    keywords = {"model": args.model, "steps": args.steps, "guidance": args.guidance, "size": args.size,
                "seed": args.seed, "device": args.device, "dtype": args.dtype, "variant": variant_from_args(args),
                "overwrite": args.overwrite}
    if tokens:
        keywords.update(tokens=args.tokens, uncond_tokens=args.uncond_tokens)
    return keywords


def metric_dtype(device: str, dtype) -> torch.dtype:
    """The metric networks' precision: float32 unless --dtype names one. Scores in the paper's tables are
    float32 numbers, and --dtype auto must not make them depend on the machine (bf16 on a GPU, fp32 on a CPU)."""
    _, resolved = resolve_device_and_dtype(device, dtype)
    return torch.float32 if str(dtype).lower() == "auto" else resolved


def open_pipeline(model, tokens=None, uncond_tokens: str = "positive", device: str = "cpu",
                  dtype: torch.dtype | str = torch.float32, steps: int | None = None, guidance: float | None = None,
                  size: int | None = None, token_scale: float = 1.0, variant=None):
    """Load `model` (+ tokens at `token_scale`, 1 = as trained) on `device` in `dtype` ('auto' allowed) and resolve
    the sampler: the model's recommended one, else its architecture's, unless overridden. `variant`: another
    denoiser and/or a LoRA on the model (agsm.backbones.variants), applied before the tokens."""
    from ..pipelines import load_soft_tokens
    from ..sample import default_size, load_pipeline
    from ..backbones.sampler_defaults import resolve_sampler

    if size is not None and size < 1:
        raise ValueError(f"--size {size} must be >= 1")
    pipe = load_pipeline(model, device, dtype, variant)
    if tokens:
        load_soft_tokens(pipe, tokens, uncond_tokens=uncond_tokens, scale=token_scale)
    steps, guidance = resolve_sampler(pipe, steps, guidance)
    return pipe, Sampler(steps, guidance, size or default_size(pipe))


def run_config(model, tokens=None, uncond_tokens: str | None = None, seed: int = 0, device: str = "cpu",
               dtype="float32", variant=None, **extra) -> dict:
    """What identifies a run's images: resuming with anything different would mix two runs. The precision is the
    resolved one, so a run started with --dtype auto on a CPU (float32) does not resume on a GPU (bfloat16)."""
    _, dtype = resolve_device_and_dtype(device, dtype)
    config = {"model": str(Path(model).resolve()), "tokens": str(Path(tokens).resolve()) if tokens else None,
              "uncond_tokens": uncond_tokens, "seed": seed, "dtype": dtype_name(dtype), **extra}
    if variant is not None:  # only when set, so runs of the stock model started before these options still resume
        config["variant"] = {"denoiser": str(Path(variant.denoiser).resolve()) if variant.denoiser else None,
                             "lora": str(Path(variant.lora).resolve()) if variant.lora else None,
                             "lora_scale": variant.lora_scale, "fuse_lora": variant.fuse_lora}
    return config


def default_label(model, tokens=None, variant=None) -> str:
    """A results row name: the token run's folder name, or the model's name and '(base)'."""
    if tokens:
        path = Path(tokens)
        return path.parent.name if path.suffix == ".safetensors" else path.name
    if variant is not None:  # a tuned backbone is not the base model: name what was swapped in
        return f"{Path(model).name} + {Path(variant.denoiser or variant.lora).name}"
    return f"{Path(model).name} (base)"


def sampler_dict(sampler: Sampler) -> dict:
    return asdict(sampler)
