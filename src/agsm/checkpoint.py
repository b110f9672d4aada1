"""Atomic training checkpoints through accelerate's save_state / load_state.

A checkpoint is written to `step-XXXXXXXX.tmp` and renamed when complete, so a run killed mid-write
leaves the previous checkpoint as the latest; resuming ignores `.tmp` folders.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: Path) -> Path | None:
    root = checkpoint_dir(output_dir)
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")) if root.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(accelerator, output_dir: Path, step: int, keep: int) -> Path:
    final = checkpoint_dir(output_dir) / f"step-{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its own RNG state into it
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        done = sorted(p for p in checkpoint_dir(output_dir).glob("step-*") if not p.name.endswith(".tmp"))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class TrainState:
    """The step counter, checkpointed alongside tokens, EMA, optimiser and schedule."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
