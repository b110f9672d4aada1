"""PSNR, MSE and SSIM as PIE-Bench computes them (torchmetrics' definitions, data range 1): PSNR and MSE written
here (one line each), SSIM from torchmetrics itself. Images are float tensors [3, H, W] in 0..1.

PIE-Bench's "unedited part" metrics multiply BOTH images by the inverted edit mask and then compare the whole
images: the zeroed edit region counts as identical pixels. `masked` does that multiplication.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> float32 [3, H, W] in 0..1."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def masked(image: torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    return image * torch.as_tensor(mask, dtype=image.dtype)[None]


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) over all pixels and channels; inf for identical images."""
    err = mse(a, b)
    return math.inf if err == 0 else 10.0 * math.log10(data_range ** 2 / err)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004) by torchmetrics, the implementation PIE-Bench's evaluation calls: an 11x11
    Gaussian window (sigma 1.5), k1 0.01, k2 0.03, averaged over channels and positions. Its border and window
    handling give values about 3e-4 from a textbook loop over the windows that fit (tests/eval/test_pie_metrics.py)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"ssim needs two [C, H, W] images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 px, got {tuple(a.shape[1:])}")
    return float(structural_similarity_index_measure(a.double()[None], b.double()[None], data_range=data_range))
