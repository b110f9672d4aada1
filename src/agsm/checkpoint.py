"""Atomic training checkpoints: folders of safetensors plus JSON (train_state.py), written whole or not at all.

A checkpoint is written to `step-XXXXXXXX.tmp` and renamed when complete, so a run killed mid-write
leaves the previous checkpoint as the latest; resuming ignores `.tmp` folders. A full disk stops the run
with a message naming the folder, and the previous checkpoints stay as they were.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import train_state
from .atomic_files import DiskFullError, is_disk_full


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def finished_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = finished_checkpoints(output_dir)
    return done[-1] if done else None


class TrainState:
    """What the loop counts: the step, and the non-finite steps it skipped (train.max_bad_steps)."""

    def __init__(self):
        self.step = 0
        self.skipped = 0


def save_checkpoint(accelerator, output_dir: Path, state: TrainState, keep: int, tokens, ema_tokens, optimizer,
                    schedule) -> Path:
    """Every process writes its RNG state, the main process the rest; then the folder is renamed into place."""
    final = checkpoint_dir(output_dir) / f"step-{state.step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    main = None
    if accelerator.is_main_process:
        main = train_state.state_files(tokens, ema_tokens, optimizer, schedule, accelerator.scaler, state.step,
                                       state.skipped, accelerator.num_processes)
    try:
        train_state.write(tmp, accelerator.process_index, main)
    except DiskFullError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            raise DiskFullError(tmp, 0, "a checkpoint") from exc
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in finished_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: Path, state: TrainState, tokens, ema_tokens, optimizer, schedule) -> None:
    """Restore a checkpoint written by save_checkpoint into the live objects and `state`."""
    meta = train_state.restore(folder, accelerator.process_index, accelerator.num_processes, tokens, ema_tokens,
                               optimizer, schedule, accelerator.scaler)
    state.step, state.skipped = int(meta["step"]), int(meta["skipped_steps"])
