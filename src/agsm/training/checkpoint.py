"""Atomic training checkpoints: folders of safetensors plus JSON (checkpoint_files.py), written whole or not at all.

Checkpoints are `<run>/checkpoints/checkpoint-N`, N the step without padding (the name diffusers' training
scripts use), ordered by N as a number. A checkpoint is written to `checkpoint-N.tmp` and renamed when complete, so a run
killed mid-write leaves the previous checkpoint as the latest; resuming ignores `.tmp` folders. A full disk
stops the run with a message naming the folder, and the previous checkpoints stay as they were.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from . import checkpoint_files
from ..utils.atomic_files import DiskFullError, is_disk_full
from .checkpoint_files import CheckpointError

PREFIX = "checkpoint-"
# checkpoint-N; a `.tmp` suffix never matches.
_NAME = re.compile(r"checkpoint-(\d+)")


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step}"


def checkpoint_step(folder: Path) -> int | None:
    """The step of a checkpoint folder's name (checkpoint-N); None for other names."""
    match = _NAME.fullmatch(Path(folder).name)
    return int(match.group(1)) if match else None


def finished_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first: by step as a number (checkpoint-1000 after checkpoint-999)."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(output_dir: Path) -> Path | None:
    done = finished_checkpoints(output_dir)
    return done[-1] if done else None


def find_checkpoint(run: Path, name: str = "latest") -> Path:
    """A finished checkpoint of the run in `run`: 'latest', a name in its checkpoints/ (checkpoint-N), or
    a path to one; CheckpointError naming the value and listing the run's checkpoints otherwise."""
    done = finished_checkpoints(run)
    names = ", ".join(p.name for p in done) or "none yet"
    if name == "latest":
        if not done:
            raise CheckpointError(f"{checkpoint_dir(run)} holds no finished checkpoint; train the run (agsm train) "
                                  "until it writes one (train.checkpoint_every)")
        return done[-1]
    candidate = checkpoint_dir(run) / Path(name).name  # a name, or a path to one of this run's checkpoints
    in_run = Path(name).parent == Path(".") or Path(name).parent.resolve() == checkpoint_dir(run).resolve()
    if in_run and candidate.is_dir() and checkpoint_step(candidate) is not None:
        return candidate
    raise CheckpointError(f"{name!r} is not a finished checkpoint of the run in {run}; give 'latest' or one of: "
                          f"{names}")


def run_of(path: Path) -> tuple[Path, Path | None]:
    """(run folder, checkpoint) that `path` names: a checkpoint folder <run>/checkpoints/checkpoint-N, or a run
    folder (with its latest checkpoint, None before the first). CheckpointError naming `path` otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} does not exist; give a run folder (the train.output_dir of a run) or one of "
                              "its checkpoints/checkpoint-N folders")
    if checkpoint_step(path) is not None and path.parent.name == "checkpoints":
        return path.parent.parent, path
    if (path / "checkpoints").is_dir() or (path / "config.yaml").is_file():
        return path, latest_checkpoint(path)
    if (path / f"{checkpoint_files.STATE}.json").is_file():
        raise CheckpointError(f"{path} is a checkpoint outside a run folder; a run continues where it was written: "
                              "put it back as <run>/checkpoints/checkpoint-N beside that run's config.yaml")
    raise CheckpointError(f"{path} is neither a checkpoint (<run>/checkpoints/checkpoint-N) nor a run folder "
                          "(holding checkpoints/ or config.yaml)")


class TrainState:
    """What the loop counts: the step, and the non-finite steps it skipped (train.max_bad_steps)."""

    def __init__(self):
        self.step = 0
        self.skipped = 0


def save_checkpoint(accelerator, output_dir: Path, state: TrainState, keep: int | None, trained, averaged,
                    optimizer, schedule, token_meta: dict | None = None,
                    names: tuple[str, str] = ("tokens", "ema")) -> Path:
    """Every process writes its RNG state, the main process the rest; then the folder is renamed into place and
    all but the newest `keep` checkpoints are deleted (None keeps all). `token_meta` (export.token_metadata)
    lets `agsm export` write a token file from this checkpoint without loading the model. `trained` is what the
    optimiser moves (soft tokens, a LoRA's or the whole denoiser's weights), `averaged` its moving average or None;
    `names` prefix the two (checkpoint_files.state_files)."""
    final = checkpoint_dir(output_dir) / checkpoint_name(state.step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    main = None
    if accelerator.is_main_process:
        main = checkpoint_files.state_files(trained, averaged, optimizer, schedule, accelerator.scaler, state.step,
                                       state.skipped, accelerator.num_processes, token_meta, names)
    try:
        checkpoint_files.write(tmp, accelerator.process_index, main)
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
        for old in (finished_checkpoints(output_dir)[:-keep] if keep else []):
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: Path, state: TrainState, trained, averaged, optimizer, schedule,
                    names: tuple[str, str] = ("tokens", "ema")) -> None:
    """Restore a checkpoint written by save_checkpoint into the live objects and `state`."""
    meta = checkpoint_files.restore(folder, accelerator.process_index, accelerator.num_processes, trained, averaged,
                               optimizer, schedule, accelerator.scaler, names)
    state.step, state.skipped = int(meta["step"]), int(meta["skipped_steps"])
