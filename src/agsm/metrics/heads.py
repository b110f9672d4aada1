"""The score head shared by ImageReward and the LAION aesthetic predictor.

Both use the same stack of five Linear layers (768 -> 1024 -> 128 -> 64 -> 16 -> 1) with Dropout between the first
four, and no activation at all (the ReLUs are commented out in both originals), so the head is one affine map
written as five. The Dropout layers only matter for the indices: the Linear layers sit at positions 0, 2, 4, 6, 7
of an nn.Sequential called `layers`, which is the key layout of both checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .weights import check_keys

LINEAR_AT = (0, 2, 4, 6, 7)
DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}


class LinearStackHead(nn.Module):
    """`layers.{0,2,4,6,7}` Linear layers of the given widths, Dropout at 1, 3, 5; input [B, dims[0]] -> [B, 1]."""

    def __init__(self, dims=(768, 1024, 128, 64, 16, 1)):
        super().__init__()
        if len(dims) != len(LINEAR_AT) + 1:
            raise ValueError(f"a head needs {len(LINEAR_AT) + 1} widths, got {dims}")
        modules, linear = [], iter(zip(dims[:-1], dims[1:]))
        for i in range(LINEAR_AT[-1] + 1):
            modules.append(nn.Linear(*next(linear)) if i in LINEAR_AT else nn.Dropout(DROPOUT[i]))
        self.layers = nn.Sequential(*modules)
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], source: Path | str) -> "LinearStackHead":
        """A head whose widths are read from `state` ("layers.N.weight" keys), loaded strictly."""
        expected = [f"layers.{i}.{p}" for i in LINEAR_AT for p in ("weight", "bias")]
        check_keys(source, expected, state)
        dims = [state["layers.0.weight"].shape[1]] + [state[f"layers.{i}.weight"].shape[0] for i in LINEAR_AT]
        head = cls(dims)
        head.load_state_dict(state, strict=True)
        return head.eval()
