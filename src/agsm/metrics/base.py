"""The one interface of the image-text metrics: `metric.score(images, prompts)` -> float32 [N] on the CPU."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from ..utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype) -> torch.dtype:
    """A torch dtype from a torch dtype or one of the names in DTYPES."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"unknown dtype {dtype!r}; use a torch dtype or one of {sorted(DTYPES)}")


class ImageTextMetric:
    """Scores (image, prompt) pairs one number per image, in batches, with a progress bar.

    Subclasses set `name` (and `uses_prompts = False` for image-only metrics) and implement `_score_batch`.
    """

    name = "metric"
    uses_prompts = True

    def __init__(self, device="cpu", dtype=torch.float32, batch_size: int = 16, progress: bool = True):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype)
        self.batch_size = batch_size
        self.progress = progress

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str] | None = None) -> torch.Tensor:
        """One float32 score per image, on the CPU, in the metric's natural scale (see docs/metrics.md)."""
        images = list(images)
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise TypeError(f"{self.name}: images[{i}] is a {type(image).__name__}, expected a PIL.Image.Image")
        if prompts is None:
            if self.uses_prompts:
                raise ValueError(f"{self.name} needs one prompt per image; got prompts=None")
            prompts = [""] * len(images)
        prompts = list(prompts)
        if len(prompts) != len(images):
            raise ValueError(f"{self.name}: {len(images)} images but {len(prompts)} prompts; give one prompt per image")
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"{self.name}: prompts[{i}] is a {type(prompt).__name__}, expected str")
        scores = []
        with progress_bar(total=len(images), desc=self.name, unit="img", disable=not self.progress) as bar:
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                with torch.inference_mode():
                    batch = self._score_batch(images[start:stop], prompts[start:stop])
                scores.append(batch.detach().float().reshape(-1).cpu())
                bar.update(len(scores[-1]))
        return torch.cat(scores) if scores else torch.zeros(0)

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device}, dtype={self.dtype})"
