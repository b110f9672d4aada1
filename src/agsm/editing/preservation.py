"""How much of the source an edit kept: PSNR (whole image, or outside a box) and objects found in place."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical images (PSNR is infinite there), so JSON and means stay finite


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float64)


def psnr(a, b, mask: np.ndarray | None = None) -> float:
    """PSNR in dB between two same-size RGB images (PIL or uint8 arrays) over the pixels where mask [H, W] is True."""
    x, y = _pixels(a), _pixels(b)
    if x.shape != y.shape:
        raise ValueError(f"PSNR needs images of one size, got {x.shape[:2]} and {y.shape[:2]}")
    sq = (x - y) ** 2
    if mask is not None:
        if mask.shape != x.shape[:2] or not mask.any():
            raise ValueError(f"mask of shape {mask.shape} with {int(mask.sum())} pixels does not select from a "
                             f"{x.shape[0]}x{x.shape[1]} image")
        sq = sq[mask]
    mse = float(sq.mean())
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def outside_box(size: tuple[int, int], box: tuple[int, int, int, int], margin: int = 2) -> np.ndarray:
    """[H, W] mask of the pixels outside box (x0, y0, x1, y1 exclusive) grown by `margin` px (soft edges)."""
    h, w = size
    mask = np.ones((h, w), dtype=bool)
    x0, y0, x1, y1 = box
    mask[max(0, y0 - margin):min(h, y1 + margin), max(0, x0 - margin):min(w, x1 + margin)] = False
    return mask


def found_in_place(obj, detections: Sequence, tolerance: float = 3.0) -> bool:
    """Whether some detection has obj's shape and colour with its centre within `tolerance` px of obj's."""
    return any(d.shape == obj.shape and d.color == obj.color
               and math.dist(d.center, obj.center) <= tolerance for d in detections)
