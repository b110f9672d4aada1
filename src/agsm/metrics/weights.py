"""Where each metric finds its weights on disk, and strict loading of checkpoints in their original key layout.

`weights` is either one folder laid out as the metric's docstring says, or a mapping naming each part's path
({"checkpoint": ..., "clip": ...}). Nothing here downloads: a missing part raises FileNotFoundError that names
the path that was looked at and where users get the file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

DOCS = "docs/metrics.md"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
# For each kind of folder: groups of file names, one of each group must be there.
FOLDER_NEEDS = {"model": [("config.json",)], "processor": [PROCESSOR_FILES],
                "config+processor": [("config.json",), PROCESSOR_FILES],
                "model+processor": [("config.json",), PROCESSOR_FILES],
                "tokenizer": [("tokenizer_config.json", "vocab.txt", "tokenizer.json")]}


@dataclass(frozen=True)
class Part:
    """One thing a metric needs: a file or a folder, where it sits inside the weights folder, where to get it."""

    key: str  # its name in the mapping form of `weights`
    default: str  # path relative to the weights folder ("." is the folder itself)
    kind: str  # "file" or a key of FOLDER_NEEDS
    source: str  # how users obtain it


def resolve(metric: str, weights, parts: Iterable[Part]) -> dict[str, Path]:
    """{part key: existing path} for `weights` (a folder or a {key: path} mapping); raises naming what is missing."""
    parts = list(parts)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - {p.key for p in parts})
        if unknown:
            raise ValueError(f"{metric} weights: unknown part(s) {unknown}; valid parts are "
                             f"{[p.key for p in parts]} (see {DOCS})")
        missing = [p.key for p in parts if p.key not in weights]
        if missing:
            raise ValueError(f"{metric} weights: the mapping lacks part(s) {missing}; give all of "
                             f"{[p.key for p in parts]} or one folder laid out as {DOCS} describes")
        paths = {p.key: Path(weights[p.key]).expanduser() for p in parts}
    elif isinstance(weights, (str, os.PathLike)):
        root = Path(weights).expanduser()
        if not root.is_dir():
            wanted = "; ".join(f"{'the model' if p.default == '.' else p.default} from {p.source}" for p in parts)
            raise FileNotFoundError(f"{metric} weights folder not found: {root}. It should be a folder holding "
                                    f"{wanted} (see {DOCS})")
        paths = {p.key: root / p.default for p in parts}
    else:
        raise TypeError(f"{metric} weights must be a folder path or a mapping of part paths, "
                        f"got {type(weights).__name__}")
    for part in parts:
        _check(metric, part, paths[part.key])
    return paths


def _check(metric: str, part: Part, path: Path) -> None:
    where = f"{metric} weights: {part.key} "
    if part.kind == "file":
        if not path.is_file():
            raise FileNotFoundError(f"{where}file not found: {path}. Get it from {part.source} (see {DOCS})")
        return
    if not path.is_dir():
        raise FileNotFoundError(f"{where}folder not found: {path}. Get it from {part.source} (see {DOCS})")
    for needed in FOLDER_NEEDS[part.kind]:
        if not any((path / name).is_file() for name in needed):
            raise FileNotFoundError(f"{where}folder {path} has none of {list(needed)}. Get it from {part.source} "
                                    f"(see {DOCS})")


def has_processor(folder: Path) -> bool:
    """Whether `folder` holds an image processor config (so it can stand in as a processor folder)."""
    return any((folder / name).is_file() for name in PROCESSOR_FILES)


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a torch checkpoint file: a plain state dict, or one stored under "state_dict"."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors have no common base class worth naming
        raise ValueError(f"cannot read {path} as a torch checkpoint of tensors ({type(err).__name__}: {err}); "
                         "it must be the original file, loadable with torch.load(weights_only=True)") from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} is not a state dict of tensors (top level: {type(obj).__name__})")
    if obj and all(k.startswith("module.") for k in obj):  # saved from a DistributedDataParallel wrapper
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def check_keys(source: Path | str, expected: Iterable[str], got: Iterable[str], optional: Iterable[str] = ()) -> None:
    """Raise naming every missing and every unexpected key; `optional` keys may be present or absent."""
    expected, got, optional = set(expected), set(got), set(optional)
    missing = sorted(expected - got)
    extra = sorted(got - expected - optional)
    if missing or extra:
        lines = [f"{source} does not match the expected key layout:"]
        if missing:
            lines.append(f"  missing {len(missing)}: {_some(missing)}")
        if extra:
            lines.append(f"  unexpected {len(extra)}: {_some(extra)}")
        lines.append(f"  Is it the original file? (see {DOCS})")
        raise ValueError("\n".join(lines))


def _some(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")
