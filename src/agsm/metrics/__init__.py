"""Image-text metrics of the paper (CLIP score, PickScore, ImageReward, HPSv2, aesthetic) and FID, from local weights.

    import torch
    from agsm.metrics import METRIC_NAMES, load_metric
    metric = load_metric("pickscore", "weights/pickscore", device="cuda", dtype=torch.float16, batch_size=32)
    scores = metric.score(images, prompts)  # float32 [N] on the CPU, one per image

Each metric's `weights` layout (a folder, or a mapping of its parts) is in its module docstring and in
docs/metrics.md; `agsm.metrics.tiny.write_tiny_weights(name, folder)` writes the same layout with tiny random
models for tests. FID lives in `agsm.metrics.fid`; the editing measures of PIE-Bench in pie_metrics.py (over
pixel_metrics.py, lpips_net.py and structure_distance.py).
"""
from __future__ import annotations

import importlib
import logging

import torch

from .base import ImageTextMetric

log = logging.getLogger(__name__)

METRIC_NAMES = ("clip", "pickscore", "imagereward", "hpsv2", "aesthetic")
_CLASSES = {"clip": ("clip_score", "CLIPScore"), "pickscore": ("clip_score", "PickScore"),
            "imagereward": ("imagereward", "ImageReward"), "hpsv2": ("hps", "HPSv2"),
            "aesthetic": ("aesthetic", "AestheticScore")}


def metric_class(name: str) -> type[ImageTextMetric]:
    if name not in _CLASSES:
        raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def load_metric(name: str, weights, device="cpu", dtype=torch.float32, batch_size: int = 16,
                progress: bool = True) -> ImageTextMetric:
    """The metric `name` with its weights from `weights` (a local folder or a mapping of part paths)."""
    cls = metric_class(name)
    log.info("loading metric %s from %s", name, weights)
    return cls(weights, device=device, dtype=dtype, batch_size=batch_size, progress=progress)


__all__ = ["METRIC_NAMES", "ImageTextMetric", "load_metric", "metric_class"]
