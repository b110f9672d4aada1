"""Who may write into a training run folder, and whether a resumed run is still the run it continues.

`claim_run_folder` takes the folder's lock (training/run_lock.py), then:
- without --resume, a folder that already holds a run (checkpoints or a token file) is refused, unless
  --overwrite, which deletes that run's checkpoints, tokens and logs first; otherwise a new run would prune
  the old run's checkpoints by name and a later --resume would mix the two;
- with --resume, the saved config.yaml is compared with the new config: differences that change the result
  (seed, method, data, batch, lr, tokens ...) are refused, listed; those that do not (the options in
  RESUMABLE_CHANGES) are allowed and logged.
Only then is the new config.yaml written. On several machines, `check_shared_run_folder` (every process, after the
claim) stops a run whose processes do not all see that folder: checkpoints need it shared (docs/multinode.md).

`--resume PATH` (`resume_point`) names the run folder itself or one of its checkpoints; it must be this run's
folder (train.output_dir), so the comparison above is with the config of the run that wrote the checkpoint, and
only the latest checkpoint may be resumed, since later ones would otherwise be taken for this run's progress.

The default data cache, <run>/cache, is not part of a run: it neither makes a folder "hold a run" nor is
deleted by --overwrite. Its entries are keyed by a hash of everything they encode (data/cache.py), so a new run
never reads an entry made from other inputs, and keeping it saves encoding the data again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
import yaml

from ..utils import atomic_files
from .checkpoint import checkpoint_dir, finished_checkpoints, run_of
from .config import Config, from_dict
from ..errors import AgsmError
from .run_lock import LOCK_NAME, RunLock
from ..tokens.token_file import FILE_NAME

log = logging.getLogger("agsm.train")
CONFIG_NAME = "config.yaml"
# Options that may differ on --resume: how long, how often to log or save, where files go, memory savings, and
# how many non-finite steps to skip (raised to get past a bad batch). Everything else shapes the tokens.
# Which token file is the main one (train.export_tokens) changes only the export, not the tokens.
# Where metrics go (train.report_to) and the validation images (train.validation_*) never touch the tokens.
# train.gradient_accumulation_steps is not one of them, although it saves memory: it sets each update's batch (and,
# micro-batches being numbered step x N + m, which data and draws the remaining steps take), as images_per_step does.
RESUMABLE_CHANGES = {"train.steps", "train.log_every", "train.checkpoint_every", "train.checkpoints_total_limit",
                     "train.output_dir", "train.gradient_checkpointing", "train.max_bad_steps", "data.cache_dir",
                     "train.compile", "train.channels_last", "train.attention_precision",  # speed: the same math
                     "train.export_tokens", "train.report_to", "train.validation_prompts", "train.validation_every",
                     "train.validation_seed", "train.validation_steps", "train.validation_guidance",
                     "train.num_validation_images"}
RUN_OUTPUTS = (FILE_NAME, "soft_tokens_ema.safetensors", "soft_tokens_online.safetensors", "train_log.jsonl",
               "README.md")  # the model card describes the tokens, so it goes with them


class RunFolderConflict(AgsmError):
    """The folder holds another run, or --resume was asked with settings that would change the result."""


def claim_run_folder(out: Path, config: Config, resume: bool, overwrite: bool) -> RunLock:
    """Lock `out` for this process, check it against resume/overwrite, write config.yaml; returns the lock."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in the folder and --overwrite deletes it; give one of them")
    out = Path(out)
    lock = RunLock(out).acquire()
    try:
        existing = _existing_run(out)
        if resume:
            _check_resumable(out, config)
        elif existing and not overwrite:
            raise RunFolderConflict(f"{out} already holds a run ({existing}); continue it with --resume, start it "
                                    "over with --overwrite (deletes its checkpoints, tokens and logs), or choose "
                                    "another train.output_dir")
        elif existing:
            _clear_run(out)
            log.warning("--overwrite: deleted the previous run in %s (%s)", out, existing)
        config.save(out / CONFIG_NAME)
    except BaseException:
        lock.release()
        raise
    return lock


def check_shared_run_folder(out: Path, accelerator) -> None:
    """Every process must see the folder the main process just locked: all of them write their random state into
    its checkpoints and read it back on --resume, so on several machines train.output_dir must be one shared folder
    (docs/multinode.md). Each process hashes its view of the lock file and every process compares all the hashes,
    so all of them stop together (one that stopped alone would leave the others waiting at the next collective).
    Call it on every process after claim_run_folder, once the main process holds the lock."""
    if accelerator.num_processes == 1:
        return
    seen = torch.tensor([_lock_digest(Path(out))], dtype=torch.long, device=accelerator.device)
    digests = accelerator.gather(seen).tolist()
    others = [rank for rank, digest in enumerate(digests) if digest != digests[0] or digest == 0]
    if others:
        who = f"process {others[0]} does" if len(others) == 1 else f"processes {', '.join(map(str, others))} do"
        raise RunFolderConflict(
            f"train.output_dir {out} is not the same folder for every process: {who} not see the run lock that "
            f"process 0 holds there ({LOCK_NAME}). "
            "Every process writes its random state into the run's checkpoints and reads it back on --resume: put "
            "train.output_dir on a file system that every machine mounts at the same path (docs/multinode.md)")


def _lock_digest(out: Path) -> int:
    """A 63-bit hash of the run lock's contents as this process reads them (owner pid, host, start time); 0 when
    there is none."""
    try:
        text = (out / LOCK_NAME).read_bytes()
    except OSError:
        return 0
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1 if text else 0


def resume_point(resume, out: Path) -> Path | None:
    """The checkpoint that `--resume <resume>` names, None for the latest in `out` (also when resume is False,
    True or 'latest'). A path must be the run folder `out` or one of its checkpoints, the latest one."""
    if resume in (False, None, True, "latest"):
        return None
    run, checkpoint = run_of(Path(resume))
    if run.resolve() != Path(out).resolve():
        raise RunFolderConflict(f"--resume {resume} belongs to the run in {run}, but train.output_dir is {out}; a "
                                f"run continues in its own folder: drop --config (the run's config.yaml is used) or "
                                f"give --train.output_dir {run}")
    done = finished_checkpoints(run)
    position = [p.resolve() for p in done].index(checkpoint.resolve()) if checkpoint is not None else len(done)
    later = [p.name for p in done[position + 1:]]
    if later:
        raise RunFolderConflict(f"--resume {resume}: {checkpoint.name} is not the run's latest checkpoint ("
                                f"{', '.join(later)} came after it); resuming there would leave those as the run's "
                                "later progress. Delete them to go back to it, or resume with --resume latest")
    return checkpoint


def forget_log_after(out: Path, step: int) -> None:
    """Drop train_log.jsonl lines past `step`: a resumed run logs those steps again, so each step is logged once."""
    path = Path(out) / "train_log.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.endswith("\n") and _logged_step(line) <= step]  # a torn line goes too
    if len(kept) != len(lines):
        atomic_files.write_text(path, "".join(kept))


def _logged_step(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


def config_differences(saved: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """{'train.lr': (old, new), ...} over every option of two config dicts."""
    diffs = {}
    for key in sorted(set(saved) | set(new)):
        a, b, name = saved.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.update(config_differences(a, b, name + "."))
        elif a != b:
            diffs[name] = (a, b)
    return diffs


def _existing_run(out: Path) -> str:
    """A short description of the run the folder holds, or '' when it holds none."""
    done = finished_checkpoints(out)
    if done:
        return f"checkpoints up to {done[-1].name}"
    if (out / FILE_NAME).is_file():
        return f"a finished {FILE_NAME}"
    return ""


def _clear_run(out: Path) -> None:
    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
    shutil.rmtree(out / "agsm", ignore_errors=True)  # the previous run's TensorBoard events
    shutil.rmtree(out / "validation", ignore_errors=True)  # and its validation images
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)


def _check_resumable(out: Path, config: Config) -> None:
    path = out / CONFIG_NAME
    if not path.is_file():
        return  # nothing to compare with: a first start with --resume
    try:
        saved = from_dict(yaml.safe_load(path.read_text()) or {}).to_dict()
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise RunFolderConflict(f"{path} cannot be read ({exc}); it was not written by this agsm version: "
                                "start the run over with --overwrite, or in another train.output_dir") from exc
    diffs = config_differences(saved, config.to_dict())
    refused = {k: v for k, v in diffs.items() if k not in RESUMABLE_CHANGES}
    if refused:
        listed = "; ".join(f"{k}: {a!r} in the run, {b!r} now" for k, (a, b) in refused.items())
        raise RunFolderConflict(f"--resume would change the run in {out}: {listed}. These change the result; resume "
                                f"with the run's settings ({path}), or start a new run in another train.output_dir "
                                "(or here with --overwrite)")
    for key, (a, b) in diffs.items():
        log.info("--resume: %s changes from %r to %r", key, a, b)
