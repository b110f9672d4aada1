"""The image transform of OpenAI CLIP, open_clip, HPSv2, ImageReward and the LAION aesthetic predictor.

Those originals use torchvision's Resize(n, bicubic) + CenterCrop(n) + ToTensor + Normalize(OpenAI mean, std) on
PIL images. transformers' CLIP image processor does the same steps but rounds two sizes differently (the long side
after resizing, the crop offset when the margin is odd), which moves the crop by a pixel on some image sizes. This
module repeats torchvision's arithmetic with PIL alone (torchvision is not a dependency), so these metrics see the
pixels their originals saw. CLIP score and PickScore keep transformers' processor, which is what they are defined with.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (bicubic); the longer side is truncated as torchvision computes it."""
    w, h = image.size
    short, long = min(w, h), max(w, h)
    if short == size:
        return image
    new_long = int(size * long / short)
    new = (size, new_long) if w <= h else (new_long, size)
    return image.resize(new, Image.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size x size square; odd margins rounded as torchvision's CenterCrop does."""
    w, h = image.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def clip_pixels(images, size: int = 224, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """PIL images -> normalised float pixels [B, 3, size, size]."""
    arrays = [np.asarray(center_crop(resize_shorter(im, size), size).convert("RGB"), dtype=np.float32) / 255.0
              for im in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # [B, H, W, 3] -> [B, 3, H, W]
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
