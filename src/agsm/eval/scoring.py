"""Scoring saved images with agsm.metrics, a chunk of files at a time (5,000 images at 1024 px do not fit in
memory at once)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image

from ..utils.progress import progress

log = logging.getLogger(__name__)


def parse_metric_specs(specs: list[str] | None) -> dict[str, str]:
    """['clip=PATH', 'pickscore=PATH'] -> {'clip': 'PATH', ...}, names checked against agsm.metrics."""
    from ..metrics import METRIC_NAMES

    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--metrics {spec!r} must be NAME=PATH, e.g. clip=/models/clip-vit-large-patch14")
        if name not in METRIC_NAMES:
            raise ValueError(f"--metrics {spec!r}: unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
        if name in out:
            raise ValueError(f"--metrics names {name!r} twice; give each metric once")
        if not Path(path).exists():
            raise FileNotFoundError(f"--metrics {spec!r}: {path} does not exist")
        out[name] = path
    return out


def default_metric_loader(name: str, weights: str, device: str, dtype: torch.dtype, batch_size: int):
    from ..metrics import load_metric

    return load_metric(name, weights, device=device, dtype=dtype, batch_size=batch_size, progress=False)


def score_files(metric, paths: list[Path], prompts: list[str], chunk: int = 256) -> list[float]:
    """metric.score over the images at `paths` (with their prompts), `chunk` files in memory at a time."""
    scores = []
    bar = progress(total=len(paths), desc=f"scoring {metric.name}", unit="img")
    for start in range(0, len(paths), chunk):
        images = [_load(p) for p in paths[start:start + chunk]]
        scores.extend(float(s) for s in metric.score(images, prompts[start:start + chunk]))
        bar.update(len(images))
    bar.close()
    return scores


def _load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
