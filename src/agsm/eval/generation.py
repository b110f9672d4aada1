"""Shared pieces of the generation-based evaluations (COCO, GenEval export, PIE-Bench).

A model folder (+ optional soft tokens) becomes a pipeline with the model's recommended sampler, else METHOD.md's
evaluation sampler for its architecture (agsm.backbones.sampler_defaults), on --device in --dtype (agsm.utils.devices); every
image has its own seed, so any single image can be redrawn; images are written
atomically and recorded in an append-only JSONL manifest, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..backbones.variants import add_variant_options, variant_from_args
from ..utils.devices import add_device_options, dtype_name, resolve_device_and_dtype
from ..backbones.sampler_defaults import GUIDANCE_HELP, STEPS_HELP


@dataclass(frozen=True)
class Sampler:
    steps: int
    guidance: float
    size: int


def add_model_args(parser, tokens: bool = True) -> None:
    """--model/--tokens/--uncond-tokens, sampler overrides and device options shared by the eval commands."""
    parser.add_argument("--model", required=True, help="local diffusers pipeline folder (SD1.5, SDXL or SD3)")
    if tokens:
        parser.add_argument("--tokens", help="soft_tokens.safetensors (or its folder); omit for the base model")
        parser.add_argument("--uncond-tokens", default="positive", choices=("positive", "negative", "none"),
                            help="which token set the unconditional branch sees, with --tokens (default positive)")
    parser.add_argument("--steps", type=int, help=STEPS_HELP)
    parser.add_argument("--guidance", type=float, help=GUIDANCE_HELP)
    parser.add_argument("--size", type=int, help="image side in pixels (default: the model's native size)")
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    add_device_options(parser)
    add_variant_options(parser)  # a preference-tuned denoiser or a LoRA, evaluated like the stock model


def report_command(command: str, evaluate, markdown):
    """An argparse handler (args, extra) that runs `evaluate(args)` and prints its one-row results table."""
    def run(args, extra) -> None:
        if extra:
            raise ValueError(f"agsm eval {command}: unknown arguments {extra}")
        result = evaluate(args)
        print(markdown([result]))
        print(f"wrote results.json, results.md and scores.jsonl to {args.out}")
    return run


def metric_dtype(args) -> torch.dtype:
    """The metric networks' precision: float32 unless --dtype names one. Scores in the paper's tables are
    float32 numbers, and --dtype auto must not make them depend on the machine (bf16 on a GPU, fp32 on a CPU)."""
    _, dtype = resolve_device_and_dtype(args.device, args.dtype)
    return torch.float32 if str(args.dtype).lower() == "auto" else dtype


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


def run_config(args, **extra) -> dict:
    """What identifies a run's images: resuming with anything different would mix two runs. The precision is the
    resolved one, so a run started with --dtype auto on a CPU (float32) does not resume on a GPU (bfloat16)."""
    tokens = getattr(args, "tokens", None)
    _, dtype = resolve_device_and_dtype(args.device, args.dtype)
    config = {"model": str(Path(args.model).resolve()), "tokens": str(Path(tokens).resolve()) if tokens else None,
              "uncond_tokens": getattr(args, "uncond_tokens", None), "seed": args.seed, "dtype": dtype_name(dtype),
              **extra}
    variant = variant_from_args(args)
    if variant is not None:  # only when set, so runs of the stock model started before these options still resume
        config["variant"] = {"denoiser": str(Path(variant.denoiser).resolve()) if variant.denoiser else None,
                             "lora": str(Path(variant.lora).resolve()) if variant.lora else None,
                             "lora_scale": variant.lora_scale, "fuse_lora": variant.fuse_lora}
    return config


def default_label(args) -> str:
    """A results row name: the token run's folder name, or the model's name and '(base)'."""
    if getattr(args, "tokens", None):
        path = Path(args.tokens)
        return path.parent.name if path.suffix == ".safetensors" else path.name
    variant = variant_from_args(args)
    if variant is not None:  # a tuned backbone is not the base model: name what was swapped in
        return f"{Path(args.model).name} + {Path(variant.denoiser or variant.lora).name}"
    return f"{Path(args.model).name} (base)"


def generate(pipe, prompts: list[str], seeds: list[int], sampler: Sampler) -> list:
    """One image per (prompt, seed); each image's initial noise comes from its own generator, so batching
    does not change which image a seed gives."""
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    return pipe(list(prompts), num_inference_steps=sampler.steps, guidance_scale=sampler.guidance,
                height=sampler.size, width=sampler.size, generator=generators).images


def save_png(image, path: Path) -> None:
    """Write to a temporary name, then rename: a file at `path` is always a complete image."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    """Atomically (temporary file, fsync, rename): a crash or a full disk leaves the previous file whole."""
    from ..utils.atomic_files import write_json as write_atomically

    write_atomically(path, data, indent=2)


def check_same_config(path: Path, config: dict) -> None:
    """Write config.json on the first run; on a resume, refuse settings that differ from it."""
    path = Path(path)
    if not path.exists():
        write_json(path, config)
        return
    old = json.loads(path.read_text())
    changed = {k: (old.get(k), config.get(k)) for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)}
    if changed:
        diff = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
        raise ValueError(f"{path.parent} holds a run with other settings ({diff}); use the same settings "
                         "to resume it, or another --out for a new run")


class Manifest:
    """Append-only JSONL of finished items, keyed by an integer field. A kill while appending can leave a
    torn last line: it is cut off on open, and that item is redone."""

    def __init__(self, path: Path, key: str = "index"):
        self.path, self.key = Path(path), key
        self.entries: dict[int, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                self.path.write_bytes(data)
            for line in data.decode().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.entries[entry[key]] = entry

    def done(self, folder: Path) -> set[int]:
        """Keys whose entry is recorded and whose image is on disk."""
        return {k for k, e in self.entries.items() if (Path(folder) / e["file"]).is_file()}

    def append(self, entry: dict) -> None:
        self.extend([entry])

    def extend(self, entries: list[dict]) -> None:
        """Record several finished items in one write; a kill leaves some of them and a torn line, cut on open."""
        with open(self.path, "a") as f:
            f.write("".join(json.dumps(entry) + "\n" for entry in entries))
            f.flush()
            os.fsync(f.fileno())
        for entry in entries:
            self.entries[entry[self.key]] = entry


def sampler_dict(sampler: Sampler) -> dict:
    return asdict(sampler)


def saved_sampler(config_path: Path, config: dict, args) -> Sampler:
    """The sampler of a finished run, after checking that `config` and any --steps/--guidance/--size agree."""
    saved = json.loads(Path(config_path).read_text())
    sampler = Sampler(**saved["sampler"])
    check_same_config(config_path, {**config, "sampler": saved["sampler"]})
    for name in ("steps", "guidance", "size"):
        given = getattr(args, name, None)
        if given is not None and given != getattr(sampler, name):
            raise ValueError(f"--{name} {given} differs from the finished run in {Path(config_path).parent} "
                             f"({getattr(sampler, name)}); use another --out for a new run")
    return sampler
