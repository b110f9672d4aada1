"""The learned vectors: S token sets of N tokens (set 0 = psi+, set 1 = psi-) and a time table of 100 buckets
shared by all sets, added to every token (docs/method.md, "Soft tokens").
"""
from __future__ import annotations

import torch
from torch import nn

POSITIVE, NEGATIVE = 0, 1


class SoftTokens(nn.Module):
    """psi+ / psi- token sets [S, N, D] and a time table [buckets, D] (or [buckets, G, D], one per group of N / G
    tokens) added per sample by timestep. N is `total_tokens`: every token of a set, all MM-DiT blocks together
    (the config's tokens.num_tokens is the count per block)."""

    def __init__(self, total_tokens: int, width: int, num_sets: int = 2, num_buckets: int = 100,
                 num_train_timesteps: int = 1000, init_std: float = 0.02, init_tokens: torch.Tensor | None = None,
                 time_groups: int = 1, time_init_std: float = 0.0):
        super().__init__()
        if total_tokens < 1 or num_sets not in (1, 2) or num_buckets < 1:
            raise ValueError(f"soft tokens need total_tokens >= 1 (got {total_tokens}), num_sets 1 or 2 "
                             f"(got {num_sets}) and num_buckets >= 1 (got {num_buckets})")
        if time_groups < 1 or total_tokens % time_groups:
            raise ValueError(f"time_groups {time_groups} must divide total_tokens {total_tokens} (one time table per "
                             "group of tokens, e.g. per MM-DiT block)")
        sets = torch.randn(num_sets, total_tokens, width) * init_std
        if init_tokens is not None:  # e.g. the empty prompt's BOS embedding; the random offset breaks symmetry
            sets = sets + init_tokens.reshape(1, -1, width).expand_as(sets)
        self.sets = nn.Parameter(sets)
        # Zero start by default: the time table is a correction on top of the tokens, not a second initialisation.
        # The public SD3 code keeps one table per block ([buckets, groups, D]) drawn from normal(0, 0.02).
        shape = (num_buckets, width) if time_groups == 1 else (num_buckets, time_groups, width)
        self.time_table = nn.Parameter(torch.randn(shape) * time_init_std)
        self.num_train_timesteps = num_train_timesteps

    @property
    def num_sets(self) -> int:
        return self.sets.shape[0]

    @property
    def total_tokens(self) -> int:
        return self.sets.shape[1]

    @property
    def width(self) -> int:
        return self.sets.shape[2]

    def bucket(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep (diffusion index or flow t in [0, 1000]) -> bucket index, per sample."""
        per_bucket = self.num_train_timesteps / self.time_table.shape[0]
        return (t.float() / per_bucket).long().clamp(0, self.time_table.shape[0] - 1)

    def forward(self, set_index: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """set_index [B] (0 = psi+, 1 = psi-), t [B] -> tokens [B, N, D].

        With a single set (SoftREPA, the shared-token ablation) every sample uses it.
        """
        chosen = self.sets[set_index.clamp(max=self.num_sets - 1)]  # [B, N, D]
        table = self.time_table[self.bucket(t)]  # [B, D], or [B, G, D] with one table per group of tokens
        if table.ndim == 2:
            return chosen + table[:, None, :]
        return chosen + table.repeat_interleave(self.total_tokens // table.shape[1], dim=1)
