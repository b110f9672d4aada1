"""`EncodedDataset`: a finished latent cache folder, read back for training.

The folder holds `index.json` (what was encoded), `latents-*.safetensors` and, when text was cached,
`text-*.safetensors` (one row per caption, keys from `TextCond.tensors()`). Shards under ~2 GB in total
are loaded into RAM at once; bigger ones are memory-mapped and read row by row (see `shards.py`). Opening a
folder checks index.json and every shard's size and hash, so damaged bytes never reach training.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..backbones.base import Encoder, TextCond
from .errors import DamagedCacheError, DataError
from .shards import IN_MEMORY_LIMIT, ShardReader, damaged_shards

log = logging.getLogger("agsm.data")


class EncodedDataset:
    """Encoded images and their captions. Image ids are 0..num_images-1, caption ids 0..len(captions)-1."""

    def __init__(self, folder: str | Path, encoder: Encoder | None = None, *,
                 in_memory_limit: int = IN_MEMORY_LIMIT):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise DataError(f"{self.folder} is not a finished cache (no index.json); build it with "
                            "build_or_load_cache")
        try:
            self.index = json.loads(index_path.read_text(encoding="utf-8"))
            self.key: str = self.index["key"]
            shards = self.index["latent_shards"] + self.index["text_shards"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DamagedCacheError(self.folder, f"its index.json cannot be read: {exc!r}") from None
        damaged = damaged_shards(self.folder, shards)
        if damaged:
            raise DamagedCacheError(self.folder, "; ".join(damaged))
        self.image_paths = [Path(p) for p in self.index["images"]]
        self.captions: list[str] = self.index["captions"]
        self.skipped: dict[str, int] = {k: len(v) for k, v in self.index["skipped"].items()}
        self.cache_text: bool = self.index["inputs"]["cache_text"]
        self._latents = ShardReader(self.folder, self.index["latent_shards"], in_memory_limit)
        self._text = ShardReader(self.folder, self.index["text_shards"], in_memory_limit) if self.cache_text else None
        if not self.cache_text and encoder is None:
            raise DataError(f"the cache {self.folder} holds no text conditioning (cache_text=False); "
                            "pass the encoder so captions can be encoded when asked for")
        self.encoder = None if self.cache_text else encoder  # only kept when it is needed

        # Padded table so drawing captions is one vectorised lookup: row i = image i's caption ids.
        lists = self.index["image_captions"]
        self._counts = torch.tensor([len(c) for c in lists], dtype=torch.long)
        self._table = torch.full((len(lists), int(self._counts.max())), -1, dtype=torch.long)
        for i, ids in enumerate(lists):
            self._table[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)

    @property
    def num_images(self) -> int:
        return len(self.image_paths)

    def __len__(self) -> int:
        return self.num_images

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """[C, h, w] of one image's latents."""
        return tuple(self.index["latent_shape"])

    @property
    def has_flipped(self) -> bool:
        """Whether the cache also holds each image's mirrored latents (built with random_flip)."""
        return "flipped" in self._latents.keys

    def latents(self, image_ids: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
        """latents [len(image_ids), C, h, w] on the CPU, in the cache's dtype; `flip` (bool per image): those
        images' mirrored latents instead, from a cache built with random_flip."""
        rows = self._latents.gather(image_ids)
        if flip is None:
            return rows["latents"]
        if not self.has_flipped:
            raise DataError(f"the cache {self.folder} holds no mirrored latents; build it with random_flip=True "
                            "(data.random_flip true) to draw flips")
        mask = torch.as_tensor(flip, dtype=torch.bool).reshape(-1, *[1] * (rows["latents"].dim() - 1))
        return torch.where(mask, rows["flipped"], rows["latents"])

    def caption_ids_of(self, image_id: int) -> list[int]:
        return self.index["image_captions"][int(image_id)]

    def draw_captions(self, image_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One caption id per image, uniform among that image's captions; [len(image_ids)] long, CPU.

        Uses exactly one uniform draw per image whatever the caption counts, so runs stay in step.
        """
        ids = torch.as_tensor(image_ids, dtype=torch.long).reshape(-1).cpu()
        u = torch.rand(len(ids), generator=generator, device=generator.device).cpu()
        counts = self._counts[ids]
        pick = (u * counts).long().clamp_max(counts - 1)  # clamp guards u * n rounding up to n
        return self._table[ids, pick]

    def text(self, caption_ids: torch.Tensor) -> TextCond:
        """Text conditioning of the given captions, from the cache or (cache_text=False) the encoder."""
        ids = torch.as_tensor(caption_ids, dtype=torch.long).reshape(-1)
        if self._text is not None:
            return TextCond(**self._text.gather(ids))
        with torch.no_grad():
            return self.encoder.encode_text([self.captions[i] for i in ids.tolist()])

    def __repr__(self) -> str:
        return (f"EncodedDataset({self.folder}, images={self.num_images}, captions={len(self.captions)}, "
                f"latents={list(self.latent_shape)}, cache_text={self.cache_text})")
