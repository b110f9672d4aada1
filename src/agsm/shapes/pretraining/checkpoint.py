"""Atomic checkpoints of one training stage and resuming from them, refusing a checkpoint made with other settings.

A checkpoint holds only tensors, dicts, lists, numbers and strings, so it loads with `weights_only=True`:
    {"models": {name: state_dict, "ema_" + name: state_dict}, "opt": optimiser state, "step": int,
     "wall": seconds, "losses": [[step, mean loss], ...], "window": [loss sum, first step] of the steps not yet
     in the curve, "settings": the weight-changing options}
Checkpoints written before the shared trainer (sd15's unet.pt: the models' states at the top level, no settings,
no losses) still resume, unchecked.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch

from ...utils.atomic_files import write_bytes

log = logging.getLogger(__name__)


def save_atomic(obj, path: Path) -> None:
    """torch.save through the package's atomic writer (temporary file, fsync, rename; a full disk is named):
    a kill mid-write leaves the previous file intact."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def normalise(settings: dict) -> dict:
    """JSON-normalised (tuples become lists), as a checkpoint stores them and compares them."""
    return json.loads(json.dumps(settings))


def check_settings(saved: dict | None, now: dict, path: Path) -> None:
    """Raise ValueError naming every setting that differs between the checkpoint and this run."""
    if saved is None:
        log.warning("%s records no settings (written before the shared trainer); resuming unchecked", path)
        return
    now = normalise(now)
    changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
    if changed:
        raise ValueError(f"{path} was trained with other settings (checkpoint, now): {changed}; rerun with the "
                         "checkpoint's settings or give a new --work folder")


def resume(path: Path, settings: dict, online: dict, ema: dict | None, opt, device: str) -> dict:
    """Load the checkpoint at `path` into the modules and optimiser; returns its step, wall, losses and window
    (step 0 and nothing else when there is none). Refuses (ValueError) one made with other weight-changing settings.
    """
    path = Path(path)
    if not path.exists():
        return {"step": 0, "wall": 0.0, "losses": [], "window": [0.0, 0]}
    ckpt = torch.load(path, weights_only=True, map_location=device)
    check_settings(ckpt.get("settings"), settings, path)
    states = ckpt.get("models", ckpt)  # the older sd15 layout kept the states at the top level
    names = list(online) + ["ema_" + k for k in (ema or {})]
    missing = [k for k in names if k not in states]
    if missing:
        raise ValueError(f"{path} has no weights for {missing} (it holds {sorted(states)}); it was written by "
                         "another version of this trainer: give a new --work folder")
    for name, module in online.items():
        module.load_state_dict(states[name])
    for name, module in (ema or {}).items():
        module.load_state_dict(states["ema_" + name])
    opt.load_state_dict(ckpt["opt"])
    log.info("%s: resumed at step %d", path.stem, ckpt["step"])
    return {"step": ckpt["step"], "wall": ckpt["wall"], "losses": ckpt.get("losses", []),
            "window": ckpt.get("window", [0.0, ckpt["step"]])}


def state(online: dict, ema: dict | None, opt, step: int, wall: float, losses: list, window: list,
          settings: dict) -> dict:
    """The checkpoint content (see the module docstring)."""
    models = {k: m.state_dict() for k, m in online.items()}
    models |= {"ema_" + k: m.state_dict() for k, m in (ema or {}).items()}
    return {"models": models, "opt": opt.state_dict(), "step": step, "wall": wall, "losses": losses,
            "window": window, "settings": normalise(settings)}
