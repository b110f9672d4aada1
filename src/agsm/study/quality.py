"""An image-quality axis for ShapesWorld, from the judge's own detector (no learned network).

Alignment is what the judge scores; quality is whether what was drawn is clean, whatever it shows:
- `malformed_rate`: share of images holding a blob the detector cannot read as an object (shape "unknown":
  smears, lines, merged lumps), the failure a tiny model shows when pushed off its data;
- `background_noise`: mean absolute deviation from white, in 0-255 units, of the pixels outside every
  detected object's box grown by 2 px (a clean render has 0; colour noise and specks raise it);
- `clean_rate`: share of images with no malformed blob and background noise below 4/255 per pixel.
Higher clean_rate / lower noise = better quality. Computed on the generated images; prompts play no part.
"""
from __future__ import annotations

import numpy as np

from ..shapes.detect import detect
from ..shapes.spec import BACKGROUND

CLEAN_NOISE = 4.0  # 0-255 units; renders of the world itself measure 0


def one_image(image: np.ndarray) -> tuple[bool, float]:
    """(malformed, background noise) of one HxWx3 uint8 image."""
    found = detect(image)
    outside = np.ones(image.shape[:2], dtype=bool)
    for d in found:
        x0, y0, x1, y1 = d.box
        outside[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = False
    deviation = np.abs(image.astype(np.float32) - np.array(BACKGROUND, dtype=np.float32)).mean(-1)
    noise = float(deviation[outside].mean()) if outside.any() else 0.0
    return any(d.shape == "unknown" for d in found), noise


def image_quality(images: np.ndarray, verdicts=None) -> dict:
    """Quality of a stack of images [N, H, W, 3] uint8 (verdicts unused: quality ignores the prompt)."""
    rows = [one_image(im) for im in images]
    malformed = np.array([m for m, _ in rows])
    noise = np.array([n for _, n in rows])
    return {"malformed_rate": float(malformed.mean()), "background_noise": float(noise.mean()),
            "clean_rate": float(((~malformed) & (noise < CLEAN_NOISE)).mean())}
