"""Image preprocessing for the latent cache: decode, shorter side to the resolution, centre crop, [-1, 1].

The centre crop is the default (data.center_crop true): what lies outside the centre square is never trained on.
With crop=False (data.center_crop false) the whole image is resized to the square instead, its aspect ratio
distorted but nothing cut off. A random crop is not offered: the cache stores one encoding per image.

An image comes as a file path, as the bytes of an encoded file (PNG, JPEG ... as a Hugging Face dataset stores
them), or as an already decoded PIL image.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# Everything PIL raises for a file it cannot decode: OSError covers truncated and unidentified files,
# SyntaxError and ValueError come from broken chunks in some plugins, DecompressionBombError from huge ones.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

UNREADABLE, TOO_SMALL = "unreadable", "too_small"


ImageSource = Path | str | bytes | Image.Image


def load_image(source: ImageSource, resolution: int, min_size: int, crop: bool = True) -> torch.Tensor | str:
    """pixels [3, resolution, resolution] in [-1, 1], or UNREADABLE / TOO_SMALL saying why it was skipped.

    `source` is a file path, an encoded image file's bytes, or a decoded PIL image. crop: centre-crop (True) or
    resize the whole image to the square (False)."""
    if isinstance(source, Image.Image):
        return _prepare(source, resolution, min_size, crop)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return _prepare(img, resolution, min_size, crop)
    except _DECODE_ERRORS:
        return UNREADABLE


def _prepare(img: Image.Image, resolution: int, min_size: int, crop: bool = True) -> torch.Tensor | str:
    if min(img.size) < min_size:  # from the header, before paying for the decode
        return TOO_SMALL
    try:
        img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
        img = img.convert("RGB")  # forces the full decode, so truncated files fail here
    except _DECODE_ERRORS:
        return UNREADABLE
    return to_tensor(center_crop(img, resolution) if crop else resize_square(img, resolution))


def center_crop(img: Image.Image, resolution: int) -> Image.Image:
    """Resize the shorter side to `resolution` (LANCZOS) and cut the centre square."""
    w, h = img.size
    scale = resolution / min(w, h)
    w2, h2 = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    img = img.resize((w2, h2), Image.LANCZOS)
    left, top = (w2 - resolution) // 2, (h2 - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


def resize_square(img: Image.Image, resolution: int) -> Image.Image:
    """Resize the whole image to resolution x resolution (LANCZOS), whatever its aspect ratio."""
    return img.resize((resolution, resolution), Image.LANCZOS)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, H, W] in [-1, 1]."""
    array = np.asarray(img, dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def shorter_side(source: ImageSource) -> int | None:
    """The shorter side of an image in px, read from its header; None when it cannot be opened."""
    if isinstance(source, Image.Image):
        return min(source.size)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return min(img.size)
    except _DECODE_ERRORS:
        return None
