"""Frechet Inception Distance: Gaussian statistics of Inception pool features and the distance between two of them.

    from agsm.metrics.fid import compute_fid, compute_stats, inception_extractor
    extractor = inception_extractor("weights/pt_inception-2015-12-05-6726825d.pth", device="cuda")
    ref = compute_stats("coco/val2017_512", extractor)      # FeatureStats(mu, sigma, n)
    ref.save("coco_val_stats.npz")                          # same keys (mu, sigma) as pytorch-fid's .npz files
    fid = compute_fid("samples/", "coco_val_stats.npz", extractor)

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), in float64. The trace of the matrix square
root is the sum of square roots of the eigenvalues of the symmetric PSD matrix S1^1/2 S2 S1^1/2 (same eigenvalues
as S1 S2), so no general matrix square root (scipy.linalg.sqrtm) is needed. An extractor is any callable
taking float images [B, 3, H, W] in 0..1 (on the CPU) and returning features [B, D]; tests pass small ones.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from .images import as_image_list, unit_batches
from .inception import load_fid_inception

log = logging.getLogger(__name__)

Extractor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FeatureStats:
    """Mean [D] and covariance [D, D] (float64) of features of n images (n = 0: unknown, as in pytorch-fid files)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int = 0

    def __post_init__(self):
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        self.n = int(self.n)
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if self.mu.ndim != 1 or self.sigma.shape != (d, d):
            raise ValueError(f"FeatureStats needs mu [D] and sigma [D, D]; got {self.mu.shape} and {self.sigma.shape}")

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to other names
            np.savez(f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n))
        return path

    @classmethod
    def load(cls, path) -> "FeatureStats":
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"FID statistics file not found: {path} (write one with FeatureStats.save)")
        with np.load(path) as data:
            missing = [k for k in ("mu", "sigma") if k not in data]
            if missing:
                raise ValueError(f"{path} lacks {missing}; FID statistics files hold mu and sigma")
            return cls(data["mu"], data["sigma"], int(data["n"]) if "n" in data else 0)


def compute_stats(images_or_folder, extractor: Extractor, batch_size: int = 50, progress: bool = True) -> FeatureStats:
    """Feature mean and covariance (unbiased, float64) of a folder's images or a list of PIL images / paths."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    images = as_image_list(images_or_folder)
    if len(images) < 2:
        raise ValueError(f"FID statistics need at least 2 images, got {len(images)}")
    shift = total = outer = None
    n = 0
    with progress_bar(total=len(images), desc="fid features", unit="img", disable=not progress) as bar:
        for batch in unit_batches(images, batch_size):
            with torch.inference_mode():
                feats = extractor(batch)
            if feats.ndim != 2 or feats.shape[0] != batch.shape[0]:
                raise ValueError(f"the extractor returned shape {tuple(feats.shape)} for {batch.shape[0]} images; "
                                 "expected [B, D]")
            x = feats.detach().to("cpu", torch.float64)
            if shift is None:  # sums of shifted features keep the covariance exact in float64
                shift = x.mean(0)
                total, outer = torch.zeros_like(shift), torch.zeros(len(shift), len(shift), dtype=torch.float64)
            x = x - shift
            total += x.sum(0)
            outer += x.T @ x
            n += x.shape[0]
            bar.update(x.shape[0])
    mean = total / n
    sigma = (outer - n * torch.outer(mean, mean)) / (n - 1)
    log.info("FID statistics of %d images, %d features", n, len(shift))
    return FeatureStats((shift + mean).numpy(), sigma.numpy(), n)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (rounding negatives clipped to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """The Frechet distance between the Gaussians N(a.mu, a.sigma) and N(b.mu, b.sigma)."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"FID statistics of different feature sizes: {a.mu.shape[0]} and {b.mu.shape[0]} "
                         "(were they computed with the same extractor?)")
    root_a = _sqrt_psd(a.sigma)
    middle = root_a @ b.sigma @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt)


def reference_stats(reference, extractor: Extractor, batch_size: int = 50, progress: bool = True) -> FeatureStats:
    """FeatureStats as given, loaded from a .npz file, or computed from an image folder."""
    if isinstance(reference, FeatureStats):
        return reference
    if not isinstance(reference, (str, os.PathLike)):
        raise TypeError(f"reference must be a folder, a .npz statistics file or FeatureStats, "
                        f"got {type(reference).__name__}")
    path = Path(reference).expanduser()
    if path.suffix == ".npz" or path.is_file():
        return FeatureStats.load(path)
    if not path.is_dir():
        raise FileNotFoundError(f"FID reference not found: {path} (give an image folder or a .npz statistics file)")
    return compute_stats(path, extractor, batch_size, progress)


def compute_fid(images_or_folder, reference, extractor: Extractor, batch_size: int = 50,
                progress: bool = True) -> float:
    """FID of images (folder or list) against a reference folder, a .npz statistics file or FeatureStats."""
    ref = reference_stats(reference, extractor, batch_size, progress)
    return fid_from_stats(compute_stats(images_or_folder, extractor, batch_size, progress), ref)


class InceptionExtractor:
    """Callable: float images [B, 3, H, W] in 0..1 (any device) -> float32 [B, 2048] FID pool features."""

    def __init__(self, net, device="cpu", dtype=torch.float32):
        self.device, self.dtype = torch.device(device), dtype
        self.net = net.to(self.device, self.dtype).eval()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(images.to(self.device, self.dtype)).float()


def inception_extractor(weights_path, device="cpu", dtype=torch.float32) -> InceptionExtractor:
    """The FID Inception (pytorch-fid's pt_inception-2015-12-05-6726825d.pth from a local path) as an extractor."""
    return InceptionExtractor(load_fid_inception(weights_path), device, dtype)
