"""What every backbone adapter shares: text conditioning as one batched value, and the adapter protocol."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch


@dataclass
class TextCond:
    """Text conditioning for N captions: what the denoiser's text inputs need, batched along dim 0.

    embeds: [N, L, D] the context the denoiser attends to (encoder_hidden_states).
    pooled: [N, P] pooled embeddings (SDXL, SD3), or None.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def __getitem__(self, index) -> "TextCond":
        return self._map(lambda t: t[index])

    def to(self, *args, **kwargs) -> "TextCond":
        return self._map(lambda t: t.to(*args, **kwargs))

    @staticmethod
    def cat(parts: list["TextCond"]) -> "TextCond":
        first = parts[0]
        return replace(first, **{f.name: None if getattr(first, f.name) is None
                                 else torch.cat([getattr(p, f.name) for p in parts]) for f in fields(first)})

    def tensors(self) -> dict[str, torch.Tensor]:
        """The non-empty fields by name (for saving to safetensors)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def _map(self, fn) -> "TextCond":
        return replace(self, **{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                                for f in fields(self)})


class Encoder(Protocol):
    """The part of a backbone the data cache needs."""

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, R, R] in [-1, 1] -> latents [B, C, h, w], already scaled for the denoiser."""

    def encode_text(self, captions: list[str]) -> TextCond:
        """captions -> their conditioning, N = len(captions)."""

    def fingerprint(self) -> str:
        """A short string that changes whenever the encoders' weights or configs do."""
