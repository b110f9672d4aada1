"""What the preference steps take: pairs of encoded images (dpo, inpo), or prompts alone (spo, which samples)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones.base import TextCond


@dataclass
class PreferenceBatch:
    """B pairs: preferred latents x0_w [B, ...], dispreferred x0_l [B, ...], their shared caption's conditioning."""

    x0_w: torch.Tensor
    x0_l: torch.Tensor
    cond: TextCond
    texts: list[str]

    @property
    def num_pairs(self) -> int:
        return self.x0_w.shape[0]


@dataclass
class PromptBatch:
    """B prompts: their conditioning and their text (the scorer reads the text)."""

    cond: TextCond
    texts: list[str]

    @property
    def num_prompts(self) -> int:
        return len(self.texts)
