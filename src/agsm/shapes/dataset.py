"""Seeded training sets of (image, caption) pairs in the Hugging Face imagefolder layout.

    from agsm.shapes.dataset import write_training_set
    write_training_set("runs/shapes-train", n=5000, seed=0)
    # -> runs/shapes-train/000000.png ... and metadata.jsonl lines {"file_name", "text", "category"}

`agsm shapes data --n 2000 --out data/shapes` is the same from the command line (write_training_folder: it also
refuses to write into a folder that holds anything else); `agsm train --data.path data/shapes` reads the result.

Categories are taken in turn. By default the suite's held-out compositions (position and
color_attr, see suite.py) are excluded, so evaluation on them measures generalisation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .render import render
from .scenes import Sample, sample_many
from .spec import CATEGORIES
from .suite import held_out_keys


def training_samples(
    n: int, seed: int, categories: tuple[str, ...] = CATEGORIES, exclude_suite: bool = True
) -> list[Sample]:
    """The scenes and captions of a training set, without rendering them."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown or not categories:
        raise ValueError(f"categories {list(categories)} must be a non-empty subset of {CATEGORIES}")
    return sample_many(n, seed, tuple(categories), held_out_keys() if exclude_suite else frozenset())


def write_training_set(
    out_dir: str | Path,
    n: int,
    seed: int,
    categories: tuple[str, ...] = CATEGORIES,
    exclude_suite: bool = True,
) -> Path:
    """Render n samples into `out_dir` as PNGs plus metadata.jsonl; returns the folder."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metadata.jsonl", "w") as meta:
        for i, smp in enumerate(training_samples(n, seed, categories, exclude_suite)):
            name = f"{i:06d}.png"
            render(smp.scene).save(out / name)
            meta.write(json.dumps({"file_name": name, "text": smp.prompt, "category": smp.category}) + "\n")
    return out


# What write_training_set puts in a folder: the only files write_training_folder may replace.
_SET_FILE = re.compile(r"\d{6}\.png|metadata\.jsonl")


def write_training_folder(out_dir: str | Path, n: int, seed: int, **options) -> Path:
    """write_training_set into a new or empty folder, or over an earlier training set (its files are replaced, so a
    smaller n leaves no stale images behind); a folder holding anything else is refused, never overwritten."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder; give a new or empty folder for the training set")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present:
        foreign = [name for name in present if not _SET_FILE.fullmatch(name)]
        if foreign or "metadata.jsonl" not in present:
            shown = ", ".join((foreign or present)[:3]) + (", ..." if len(foreign or present) > 3 else "")
            raise ValueError(f"{out} is not empty and is not a ShapesWorld training set (it holds {shown}); give a "
                             "new or empty folder, or one an earlier `agsm shapes data` wrote (its images and "
                             "metadata.jsonl are then replaced)")
        for name in present:
            (out / name).unlink()
    return write_training_set(out, n, seed, **options)
