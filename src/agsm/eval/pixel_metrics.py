"""PSNR, MSE and SSIM as PIE-Bench computes them (torchmetrics' definitions, data range 1), written here
so that no extra package is needed. Images are float tensors [3, H, W] in 0..1.

PIE-Bench's "unedited part" metrics multiply BOTH images by the inverted edit mask and then compare the whole
images: the zeroed edit region counts as identical pixels. `masked` does that multiplication.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
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


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), over the windows that fit
    inside the image (no padding) and over channels, as torchmetrics' StructuralSimilarityIndexMeasure."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"ssim needs two [C, H, W] images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < size:
        raise ValueError(f"ssim needs images of at least {size}x{size} px, got {tuple(a.shape[1:])}")
    channels = a.shape[0]
    window = gaussian_window(size, sigma).expand(channels, 1, size, size)
    x, y = a.double()[None], b.double()[None]

    def blur(t):
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())
