"""The image x caption tiling that every contrastive step shares, and how noise is drawn for it.

Which pairs a step keeps is known on the host (caption_index and pos_index live there), so the bookkeeping stays
there and only long index tensors go to the device, copied without waiting (`on_device`). Selecting with a bool
mask that lives on a GPU, or reading a value back, would wait for the device's queued work: a host-device sync in
the middle of the step (issue 17). Host-side selections give the same pairs in the same (row-major) order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..backbones.base import TextCond
from ..tokens import NEGATIVE, POSITIVE


@dataclass
class PairBatch:
    """B images, each paired with K captions from a pool of P caption conditionings.

    caption_index [B, K] indexes the pool; pos_index [B] names the column holding image i's own caption.
    """

    x0: torch.Tensor
    captions: TextCond
    caption_index: torch.Tensor
    pos_index: torch.Tensor

    @property
    def num_images(self) -> int:
        return self.x0.shape[0]

    @property
    def num_captions(self) -> int:
        return self.caption_index.shape[1]

    def positive_mask(self) -> torch.Tensor:
        """[B, K] True on each image's own caption."""
        columns = torch.arange(self.num_captions, device=self.pos_index.device)
        return columns[None, :] == self.pos_index[:, None]


class Denoiser(Protocol):
    """The backbone with soft tokens: one prediction per pair, token set chosen per pair."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond, set_index: torch.Tensor,
                 ema: bool = False) -> torch.Tensor: ...

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor: ...


def on_device(index: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device`, copied without waiting for the device (from pageable host memory the copy is
    staged before the call returns, so the host tensor may go at once)."""
    return index.to(device, non_blocking=True)


def where_true(mask: torch.Tensor, device) -> torch.Tensor:
    """The flat (row-major) positions of True in a host bool mask, as a long tensor on `device`."""
    return on_device(mask.cpu().flatten().nonzero().squeeze(1), device)


def in_batch_captions(num_images: int, num_captions: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image against every caption of the pool; image i's own caption sits at column offset + i."""
    index = torch.arange(num_captions).expand(num_images, -1)
    return index, torch.arange(num_images) + offset


def one_negative_captions(num_images: int, num_captions: int, offset: int, generator: torch.Generator):
    """Bradley-Terry ablation (K = 2): column 0 is the own caption, column 1 one other caption at random."""
    own = torch.arange(num_images) + offset
    shift = torch.randint(1, num_captions, (num_images,), generator=generator)
    return torch.stack([own, (own + shift) % num_captions], dim=1), torch.zeros(num_images, dtype=torch.long)


def with_hard_negatives(index: torch.Tensor, pos_index: torch.Tensor, hard_columns: list[list[int]],
                        generator: torch.Generator) -> torch.Tensor:
    """Replace some of each image's negatives by its own hard negatives (pool columns `hard_columns[i]`).

    index [B, K] and pos_index [B] as built by in_batch_captions / one_negative_captions; which of the
    image's in-batch negatives give way is drawn at random. Returns the new index [B, K].
    """
    index = index.clone()
    for i, hard in enumerate(hard_columns):
        negatives = [k for k in range(index.shape[1]) if k != int(pos_index[i])]
        order = torch.randperm(len(negatives), generator=generator).tolist()
        for column, k in zip(hard, (negatives[j] for j in order)):
            index[i, k] = column
    return index


def draw_noise(denoiser: Denoiser, x0: torch.Tensor, generator: torch.Generator, share: str):
    """t [B] and eps [B, ...]: one draw per image ('image', the paper) or one for the batch ('batch', public code)."""
    if share not in ("image", "batch"):
        raise ValueError(f"noise sharing {share!r} is not one of 'image', 'batch'")
    n = x0.shape[0] if share == "image" else 1
    t = on_device(denoiser.sample_timesteps(n, generator), x0.device)
    eps = on_device(torch.randn((n, *x0.shape[1:]), generator=generator), x0.device).to(x0.dtype)
    return t.expand(x0.shape[0]), eps.expand_as(x0)


def tile(batch: PairBatch, x_t: torch.Tensor, t: torch.Tensor, rows: torch.Tensor | None = None):
    """Flatten the chosen (image, caption) pairs: x_t, t, caption conditioning and token set per pair.

    rows: optional [B, K] bool of pairs to keep (default all), in row-major order; a host tensor (one on the
    device works too, at the cost of a sync).
    """
    b, k = batch.num_images, batch.num_captions
    keep = torch.ones(b, k, dtype=torch.bool) if rows is None else rows.cpu()
    image_of_pair = on_device(torch.arange(b)[:, None].expand(b, k)[keep], x_t.device)
    caption_of_pair = on_device(batch.caption_index.cpu()[keep], batch.captions.embeds.device)
    set_index = on_device(torch.where(batch.positive_mask().cpu(), POSITIVE, NEGATIVE)[keep], x_t.device)
    return x_t[image_of_pair], t[image_of_pair], batch.captions[caption_of_pair], set_index


def per_pair_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over all but the first dim of the squared error, in float32."""
    return (pred.float() - y.float()).pow(2).flatten(1).mean(1)
