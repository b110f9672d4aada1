"""PIE-Bench's editing metrics for one (source, edited, mask) triple, as PIE-Bench's evaluation defines them.

- structure_distance: DINO key self-similarity distance of the whole images (structure_distance.py).
- psnr, lpips, mse, ssim: both images multiplied by the inverted edit mask (the unedited background), then compared
  whole (pixel_metrics.py, lpips_net.py); LPIPS on -1..1 inputs.
- clip_whole: CLIP score of the edited image with the target prompt; clip_edited: of the edited image multiplied
  by the edit mask (agsm.metrics' "clip": max(100 cos, 0), as torchmetrics' CLIPScore that PIE-Bench uses).
A metric whose region is empty (an all-background or all-edit mask) is NaN for that image, as in PIE-Bench.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from .pixel_metrics import masked, mse, psnr, ssim, to_tensor

METRICS = ("structure_distance", "psnr", "lpips", "mse", "ssim", "clip_whole", "clip_edited")
WEIGHTS = {"structure_distance": "dino", "lpips": "lpips", "clip_whole": "clip", "clip_edited": "clip"}
# PIE-Bench's table: title, factor, whether higher is better
DISPLAY = {"structure_distance": ("Structure distance x10^3", 1e3, False), "psnr": ("PSNR", 1.0, True),
           "lpips": ("LPIPS x10^3", 1e3, False), "mse": ("MSE x10^4", 1e4, False),
           "ssim": ("SSIM x10^2", 1e2, True), "clip_whole": ("CLIP whole", 1.0, True),
           "clip_edited": ("CLIP edited", 1.0, True)}


def background_scores(source: Image.Image, edited: Image.Image, mask: np.ndarray, chosen, lpips=None,
                      structure=None) -> dict[str, float]:
    """The non-CLIP metrics of `chosen` for one image pair; `mask` [H, W] is 1 on the edited region."""
    src, edt = to_tensor(source), to_tensor(edited)
    keep = 1.0 - mask
    bg_src, bg_edt = masked(src, keep), masked(edt, keep)
    empty = keep.sum() == 0
    out = {}
    if "structure_distance" in chosen:
        out["structure_distance"] = structure(src, edt)
    if "psnr" in chosen:
        out["psnr"] = math.nan if empty else psnr(bg_edt, bg_src)
    if "mse" in chosen:
        out["mse"] = math.nan if empty else mse(bg_edt, bg_src)
    if "ssim" in chosen:
        out["ssim"] = math.nan if empty else ssim(bg_edt, bg_src)
    if "lpips" in chosen:
        device = lpips.shift.device
        out["lpips"] = math.nan if empty else float(lpips((bg_edt[None] * 2 - 1).to(device),
                                                          (bg_src[None] * 2 - 1).to(device))[0])
    return out


def edit_region(edited: Image.Image, mask: np.ndarray) -> Image.Image:
    """The edited image with everything outside the edit mask black (PIE-Bench's input to 'CLIP edited')."""
    pixels = np.asarray(edited.convert("RGB"), dtype=np.float32) * mask[..., None]
    return Image.fromarray(pixels.astype(np.uint8))


def clip_scores(clip, edited: list[Image.Image], masks: list[np.ndarray], prompts: list[str], chosen) -> dict:
    """{'clip_whole': [..], 'clip_edited': [..]} (those in `chosen`) for a batch of edited images."""
    out = {}
    if "clip_whole" in chosen:
        out["clip_whole"] = [float(s) for s in clip.score(edited, prompts)]
    if "clip_edited" in chosen:
        full = [i for i, m in enumerate(masks) if m.sum() > 0]
        scores = clip.score([edit_region(edited[i], masks[i]) for i in full], [prompts[i] for i in full]) if full \
            else torch.zeros(0)
        values = [math.nan] * len(edited)
        for i, s in zip(full, scores):
            values[i] = float(s)
        out["clip_edited"] = values
    return out
