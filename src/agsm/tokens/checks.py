"""Whether a soft token file can be trusted: finite values, metadata that agrees with the tensors, and an
unchanged digest.

A file whose metadata was edited by hand (stages, num_train_timesteps, a truncated time table) would load and
silently do something else than what was trained; a NaN token draws black images. Both are refused on load
with a message naming the file, the value and the fix. `digest` (written by save_tokens) is a SHA-256 over
the metadata and the tensors' bytes: any later change to either is refused. Files written before the digest
existed are checked against their tensors only.
"""
from __future__ import annotations

import hashlib
import json

import torch

UNET_STAGES = ("down", "mid", "up")


def digest(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """SHA-256 of the metadata (without the digest itself) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_token_file(tensors: dict[str, torch.Tensor], meta: dict[str, str], path) -> None:
    """Raise ValueError unless the tensors are finite and the metadata describes them."""
    for name, t in sorted(tensors.items()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            count = int((~torch.isfinite(t)).sum())
            raise ValueError(f"soft tokens {path}: {name} holds {count} non-finite value(s) (NaN or inf) and would "
                             "draw black images; train the tokens again (agsm train stops before exporting NaN)")
    saved = meta.get("digest")
    if saved is not None and saved != digest(tensors, meta):
        raise ValueError(f"soft tokens {path} were changed after `agsm train` wrote them (the digest of their "
                         "metadata and tensors no longer matches); use the file as written, or train again")
    _check_shapes(tensors, meta, path)
    _check_placement(tensors, meta, path)


def _check_shapes(tensors, meta, path) -> None:
    pos, table = tensors["psi_pos"], tensors.get("time_table")
    _need(pos.ndim == 2, path, f"psi_pos has shape {list(pos.shape)}; expected [num_tokens, width]")
    n, width = pos.shape
    if "psi_neg" in tensors:
        _need(tensors["psi_neg"].shape == pos.shape, path,
              f"psi_neg {list(tensors['psi_neg'].shape)} and psi_pos {list(pos.shape)} differ in shape")
    _need(table is not None and table.ndim in (2, 3) and table.shape[-1] == width, path,
          f"time_table has shape {None if table is None else list(table.shape)}; expected [num_buckets, {width}] "
          f"or [num_buckets, groups, {width}]")
    if table.ndim == 3:
        _need(n % table.shape[1] == 0, path, f"time_table has {table.shape[1]} groups, which do not divide the "
              f"{n} tokens")
    for key, actual in (("num_tokens", n), ("token_width", width), ("num_buckets", table.shape[0])):
        _need(_int(meta, key, path) == actual, path, f"metadata {key}={meta.get(key)!r} but the tensors have {actual}")
    _need(_int(meta, "num_train_timesteps", path) >= 1, path,
          f"metadata num_train_timesteps={meta.get('num_train_timesteps')!r} must be >= 1")


def _check_placement(tensors, meta, path) -> None:
    family, n = meta.get("family"), tensors["psi_pos"].shape[0]
    if family == "unet":
        stages = (meta.get("stages") or "").split(",")
        _need(bool(stages) and set(stages) <= set(UNET_STAGES) and len(set(stages)) == len(stages), path,
              f"metadata stages={meta.get('stages')!r} is not a comma-separated subset of {','.join(UNET_STAGES)}")
    elif family == "mmdit":
        blocks = _int(meta, "blocks", path)
        _need(blocks >= 1 and n % blocks == 0, path, f"metadata blocks={blocks} does not split the {n} tokens evenly")
    else:
        _need(False, path, f"metadata family={family!r} is not 'unet' or 'mmdit'")


def _int(meta, key, path) -> int:
    try:
        return int(meta[key])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"soft tokens {path}: metadata {key}={meta.get(key)!r} is not a whole number; the file "
                         "was damaged or edited: train the tokens again") from None


def _need(condition: bool, path, problem: str) -> None:
    if not condition:
        raise ValueError(f"soft tokens {path} do not hold together: {problem}; the file was damaged or edited: "
                         "train the tokens again")
