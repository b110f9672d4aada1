"""A training checkpoint's contents as safetensors plus JSON, so loading one can never run code.

    checkpoint-500/
        train_state.safetensors   tokens.*, ema.*, optimizer.<param>.<name> (AdamW's exp_avg, exp_avg_sq, step);
                                  a run that tunes the backbone (method dpo, inpo, spo) keeps its trained weights
                                  (LoRA or whole denoiser) as params.* and has no ema.*
        train_state.json          format, step, skipped steps, process count, optimiser param groups,
                                  lr schedule, loss scaler, and token_file: the token file metadata (backbone
                                  sizes, placement, method and settings) that `agsm export` needs
        rng-<rank>.safetensors    that process's torch generator states (CPU, and CUDA when present)
        rng-<rank>.json           that process's Python and NumPy generator states

Pickle (torch.load without weights_only, accelerate's custom-checkpoint .pkl files) could execute whatever a
crafted file holds; safetensors holds only tensors and JSON only data. Tensors are written bit for bit, and
JSON writes floats as their shortest exact repr, so a resumed run continues exactly.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..utils import atomic_files
from ..errors import AgsmError

FORMAT = "agsm-train-state-1"
STATE, RNG = "train_state", "rng"
OLD_FORMAT_FILES = ("custom_checkpoint_*.pkl", "random_states_*.pkl", "optimizer.bin", "scheduler.bin")


class CheckpointError(AgsmError):
    """A checkpoint that cannot be resumed from: old format, damaged, or made by another setup."""


def state_files(trained, averaged, optimizer, schedule, scaler, step: int, skipped: int,
                num_processes: int, token_meta: dict | None = None,
                names: tuple[str, str] = ("tokens", "ema")) -> tuple[bytes, dict]:
    """(train_state.safetensors bytes, train_state.json content) of the main process's state; `token_meta`
    (export.token_metadata) is stored as is, for exporting a token file from the checkpoint.

    `trained` is what the optimiser trains and `averaged` its moving average (None: there is none), anything with
    state_dict(); `names` are their key prefixes ('params' for a tuned backbone's weights)."""
    tensors = {f"{names[0]}.{k}": v for k, v in trained.state_dict().items()}
    if averaged is not None:
        tensors.update({f"{names[1]}.{k}": v for k, v in averaged.state_dict().items()})
    optim = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for pid, entries in optim["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:  # the training loop stops before this can happen; never let a NaN reach a checkpoint
        raise CheckpointError(f"refusing to checkpoint step {step}: {', '.join(bad)} hold non-finite values")
    meta = {"format": FORMAT, "step": step, "skipped_steps": skipped, "num_processes": num_processes, "trained": names[0],
            "optimizer": {"param_groups": optim["param_groups"], "state_values": scalars},
            "schedule": schedule.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None}
    if token_meta is not None:
        meta["token_file"] = token_meta
    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    return data, meta


def rng_files() -> tuple[bytes, dict]:
    """This process's generator states: torch's as uint8 tensors, Python's and NumPy's as JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": [version, list(keys), gauss],
            "numpy": [name, np_keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return save_safetensors(tensors), meta


def write(folder: Path, rank: int, main: tuple[bytes, dict] | None) -> None:
    """Write this process's files into `folder`: its RNG states, and the train state on the main process."""
    rng_data, rng_meta = rng_files()
    parts = [(f"{RNG}-{rank}", rng_data, rng_meta)] + ([(STATE, *main)] if main is not None else [])
    needed = sum(len(data) + len(json.dumps(meta)) + 2 * 4096 for _, data, meta in parts)  # + a block per file
    atomic_files.ensure_free_space(folder, needed, "a checkpoint")
    for name, data, meta in parts:
        atomic_files.write_bytes(folder / f"{name}.safetensors", data)
        atomic_files.write_json(folder / f"{name}.json", meta)


def read(folder: Path, rank: int) -> tuple[dict[str, torch.Tensor], dict, dict[str, torch.Tensor], dict]:
    """(state tensors, state JSON, RNG tensors, RNG JSON) of a checkpoint, after checking its format."""
    folder = Path(folder)
    if not (folder / f"{STATE}.json").is_file():
        old = sorted(p.name for pattern in OLD_FORMAT_FILES for p in folder.glob(pattern))
        if old:
            raise CheckpointError(
                f"{folder} is an old-format checkpoint ({', '.join(old)}: pickle files, which agsm no longer loads "
                "because unpickling a file can run code). To go on: restart the run with --overwrite (from step 0), "
                "or finish it with the agsm version that wrote it")
        raise CheckpointError(f"{folder} holds no {STATE}.json; it is not an agsm checkpoint (or is damaged): "
                              "delete that folder to resume from the previous checkpoint")
    tensors, meta = _read_pair(folder, STATE)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder / (STATE + '.json')} has format {meta.get('format')!r}, not {FORMAT!r}; "
                              "it was written by another agsm version: resume it with that version, or --overwrite")
    if not (folder / f"{RNG}-{rank}.json").is_file():
        raise CheckpointError(f"{folder} has no random state for process {rank}; it was written by "
                              f"{meta['num_processes']} process(es): resume with the same number of processes")
    rng_tensors, rng_meta = _read_pair(folder, f"{RNG}-{rank}")
    return tensors, meta, rng_tensors, rng_meta


def restore(folder: Path, rank: int, num_processes: int, trained, averaged, optimizer, schedule, scaler,
            names: tuple[str, str] = ("tokens", "ema")) -> dict:
    """Load a checkpoint into the live objects; returns its JSON state (step, skipped_steps ...). `averaged` None
    and `names`: as for state_files."""
    tensors, meta, rng_tensors, rng_meta = read(folder, rank)
    if meta.get("trained", "tokens") != names[0]:
        raise CheckpointError(f"{folder} holds trained {meta.get('trained', 'tokens')} but this run trains "
                              f"{names[0]} (method.name changed?); resume with the run's config.yaml")
    if meta["num_processes"] != num_processes:
        raise CheckpointError(f"{folder} was written by {meta['num_processes']} process(es) and this run has "
                              f"{num_processes}; the global batch would change: resume with "
                              f"{meta['num_processes']} process(es)")
    for prefix, module in ((f"{names[0]}.", trained), (f"{names[1]}.", averaged)):
        if module is None:
            continue
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        _check_shapes(folder, prefix, state, module.state_dict())
        module.load_state_dict(state, strict=True)
    optimizer.load_state_dict(_optimizer_state(tensors, meta["optimizer"], optimizer.state_dict()))
    schedule.load_state_dict(meta["schedule"])
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    _restore_rng(rng_tensors, rng_meta)
    return meta


def _read_pair(folder: Path, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        tensors = load_safetensors((folder / f"{name}.safetensors").read_bytes())
    except Exception as exc:  # OSError, bad JSON, or safetensors' own error type for a damaged file
        raise CheckpointError(f"checkpoint {folder} is damaged ({name}: {exc}); delete that folder to resume from "
                              "the previous checkpoint") from exc
    return tensors, meta


def _check_shapes(folder: Path, prefix: str, saved: dict, live: dict) -> None:
    shapes = lambda d: {k: list(v.shape) for k, v in d.items()}  # noqa: E731
    if shapes(saved) != shapes(live):
        raise CheckpointError(f"{folder}: the saved {prefix.rstrip('.')} tensors {shapes(saved)} do not fit this "
                              f"run's {shapes(live)}; the token settings changed: resume with the run's config.yaml")


def _optimizer_state(tensors: dict, saved: dict, live: dict) -> dict:
    """Rebuild a torch optimizer state_dict: integer parameter ids, tuples where the live optimiser has them."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in saved["state_values"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for group, live_group in zip(saved["param_groups"], live["param_groups"]):
        groups.append({k: tuple(v) if isinstance(live_group.get(k), tuple) else v for k, v in group.items()})
    return {"state": state, "param_groups": groups}


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, keys, gauss = meta["python"]
    random.setstate((version, tuple(keys), gauss))
    name, np_keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(np_keys, dtype=np.uint32), pos, has_gauss, cached))
