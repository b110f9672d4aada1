"""Small helpers the architectures share: the per-step random streams, pixel scaling, tokenising, and what a run
records (its work folder, command line and library versions)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import torch


def stage_seed(seed: int, stage: int, step: int) -> int:
    """The seed of step `step` of stream `stage`: sd15 uses 1 (VAE), 2 (latent cache), 3 (UNet); sd3 uses 4.

    Every draw of a step comes from its own generator, never from global state, so a resumed run repeats an
    uninterrupted one exactly.
    """
    return seed * 1_000_003 + stage * 100_003 + step


def stage_rng(seed: int, stage: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on `device` seeded by (seed, stage, step)."""
    return torch.Generator(device=device).manual_seed(stage_seed(seed, stage, step))


def to_model(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 64, 64, 3] uint8 -> [B, 3, 64, 64] float in [-1, 1], as the VAE expects."""
    return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids exactly as the stock pipelines make them: padded to the maximum length. [len(texts), L]"""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def default_work_dir(out_dir, work_dir=None) -> str:
    """`work_dir`, else runs/pretrain-NAME for the pipeline folder NAME: checkpoints never go inside the shipped
    folder."""
    return str(work_dir or Path("runs") / f"pretrain-{Path(out_dir).name}")


def command_line(command: str | None = None) -> str:
    """`command`, else this process's own command line, as train_info.json records it."""
    return command or " ".join(shlex.quote(a) for a in sys.argv)


def library_versions() -> dict:
    """The versions of torch, diffusers and transformers, as train_info.json records them."""
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}
