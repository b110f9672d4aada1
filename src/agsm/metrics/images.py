"""Image sources for FID: a folder, a list of files or a list of PIL images, read as float batches in 0..1."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EXTENSIONS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}


def list_images(folder) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(EXTENSIONS))}) in {folder}")
    return files


def as_image_list(source) -> list:
    """A folder path becomes its sorted image files; a sequence of PIL images or file paths is kept."""
    if isinstance(source, (str, os.PathLike)):
        return list_images(source)
    if isinstance(source, Sequence):
        return list(source)
    raise TypeError(f"images must be a folder, or a list of PIL images or paths; got {type(source).__name__}")


def to_unit_tensor(image) -> torch.Tensor:
    """A PIL image or an image file -> float [3, H, W] in 0..1 (RGB)."""
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as img:
            return to_unit_tensor(img.convert("RGB"))
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or an image path, got {type(image).__name__}")
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def unit_batches(images: Sequence, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches [B, 3, H, W] of consecutive images; a batch also ends where the image size changes."""
    batch = []
    for image in images:
        tensor = to_unit_tensor(image)
        if batch and (len(batch) == batch_size or tensor.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(tensor)
    if batch:
        yield torch.stack(batch)
