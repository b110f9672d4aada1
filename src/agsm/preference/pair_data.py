"""Preference pairs (prompt, preferred image, dispreferred image), read like Pick-a-Pic and encoded once.

    source = read_pairs("pairs/")                                   # a folder with metadata.jsonl (Pick-a-Pic layout)
    source = read_pairs("pickapic_v2/", builder="parquet")          # parquet files, a save_to_disk folder, a hub id
    source = read_pairs("mine.jsonl", PairColumns("prompt", "image_w", "image_l", label=""))  # winner/loser columns
    pairs = build_or_load_pairs(source, backbone, 512, "cache")     # the data cache of data/cache.py, reused
    x0_w, x0_l = pairs.latents(pair_ids)

Layouts. Pick-a-Pic: a caption column, two image columns (jpg_0, jpg_1) and label_0, which is 1 when image 0 is
preferred, 0 when image 1 is, and 0.5 for a tie (ties are dropped, as the Diffusion-DPO script drops them).
Winner/loser: image_0 names the preferred image and image_1 the other, with no label column (label=""). Column names
are options (data.caption_column, data.image_0_column, data.image_1_column, data.label_column). Images are what
Hugging Face datasets hold (encoded bytes, datasets.Image) or file paths, relative ones resolved against the folder
of the data (a metadata.jsonl's folder).

Reading goes through agsm.data.hf_datasets (the same opening rules and error messages as `data.format hf`), and
encoding through agsm.data.cache: each pair becomes two records, winner then loser, so one encode-once cache holds
both images of every pair, keyed by the dataset's fingerprint. An image the cache skips (unreadable, too small)
drops its pair, with one warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..backbones.base import TextCond
from ..data.cache import build_or_load_cache
from ..data.errors import DataError
from ..data.hf_datasets import SAVED_MARKERS, HFRecords, _open_saved, _open_with_load_dataset
from ..data.sources import Record

log = logging.getLogger("agsm.preference")
METADATA = "metadata.jsonl"
TIE = 0.5


@dataclass(frozen=True)
class PairColumns:
    """Where a row keeps its prompt, its two images and which one is preferred ('' label: image_0 always is)."""

    caption: str = "caption"
    image_0: str = "jpg_0"
    image_1: str = "jpg_1"
    label: str = "label_0"


def open_pair_dataset(path: str | Path, split: str = "train", builder: str = "", streaming: bool = False):
    """(dataset, fingerprint or None, base folder for relative image paths) of `path`: a folder holding
    metadata.jsonl, a save_to_disk folder, or anything `load_dataset` reads (with `builder`), as data.format hf."""
    path = Path(str(path))
    if not str(path) or str(path) == ".":
        raise DataError("data.path is empty; give the preference pairs: a folder with metadata.jsonl (caption, "
                        "jpg_0, jpg_1, label_0), parquet files, a save_to_disk folder or a hub dataset id")
    if path.is_dir() and any((path / m).is_file() for m in SAVED_MARKERS):
        dataset, fingerprint = _open_saved(path, split, streaming)
        return dataset, fingerprint, path
    if path.is_dir() and (path / METADATA).is_file() and not builder:
        # An image folder of pairs: its metadata.jsonl names two files per row, which the imagefolder builder
        # (one file_name per row) cannot read; the json builder reads the rows, and paths resolve against the folder.
        dataset, fingerprint = _open_with_load_dataset(str(path / METADATA), split, "json", streaming)
        return dataset, fingerprint, path
    dataset, fingerprint = _open_with_load_dataset(str(path), split, builder, streaming)
    return dataset, fingerprint, path if path.is_dir() else path.parent


class PairRecords:
    """A `RecordSource` of pairs: for each row without a tie, the preferred image's record, then the other's."""

    def __init__(self, dataset, columns: PairColumns = PairColumns(), *, max_pairs: int | None = None,
                 fingerprint: str | None = None, name: str = "pairs", base_dir: str | Path | None = None):
        self.columns, self.name = columns, name
        options = dict(max_images=max_pairs, fingerprint=fingerprint, name=name, base_dir=base_dir)
        # Two single-image views of the rows: they check the columns, read images as bytes or files, and
        # fingerprint the data the way data.format hf does.
        self.first = HFRecords(dataset, columns.image_0, columns.caption, **options)
        self.second = HFRecords(dataset, columns.image_1, columns.caption, **options)
        self.labels = None
        if columns.label:
            names = dataset.column_names  # None for a stream without declared features: its first row tells
            if names is not None and columns.label not in names:
                raise DataError(f"{name} has no column {columns.label!r} (which image is preferred); its columns are "
                                f"{sorted(set(dataset.column_names or []))}: set data.label_column, or '' when "
                                f"{columns.image_0!r} always holds the preferred image")
            labels = dataset.select_columns([columns.label])
            if max_pairs is not None:
                labels = labels.take(max_pairs) if self.first.streaming else labels.select(
                    range(min(max_pairs, len(labels))))
            self.labels = labels
        self.size = None if self.first.size is None else 2 * self.first.size

    def _label_values(self) -> Iterator:
        if self.labels is None:
            while True:
                yield 1.0
        for rows in self.labels.iter(batch_size=64):
            yield from rows[self.columns.label]

    def __iter__(self) -> Iterator[Record]:
        for row, (a, b, label) in enumerate(zip(self.first, self.second, self._label_values())):
            first_wins = preferred_first(label, f"{self.name} row {row}: {self.columns.label}")
            if first_wins is None:
                continue  # a tie says nothing about which is better
            winner, loser = (a, b) if first_wins else (b, a)
            yield _named(winner, row, "w")
            yield _named(loser, row, "l")

    def fingerprint(self) -> str:
        parts = {"first": self.first.fingerprint(), "second": self.second.fingerprint(), "columns": asdict(self.columns)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def preferred_first(label, where: str) -> bool | None:
    """Pick-a-Pic's label_0: 1 -> image 0 preferred, 0 -> image 1, 0.5 -> a tie (None)."""
    try:
        value = float(label)
    except (TypeError, ValueError):
        raise DataError(f"{where} is {label!r}; it must be 1 (image 0 preferred), 0 (image 1) or 0.5 (a tie)") from None
    if value == TIE:
        return None
    if value not in (0.0, 1.0):
        raise DataError(f"{where} is {label!r}; it must be 1 (image 0 preferred), 0 (image 1) or 0.5 (a tie)")
    return value == 1.0


def _named(record: Record, row: int, role: str) -> Record:
    """An in-memory image gets a name of its own per role (both images of a row share the row's name)."""
    if record.image is None:
        return record
    return Record(Path(f"{record.path}:{role}"), record.captions, record.image)


def read_pairs(path: str | Path, columns: PairColumns = PairColumns(), *, split: str = "train", builder: str = "",
               streaming: bool = False, max_pairs: int | None = None) -> PairRecords:
    dataset, fingerprint, base = open_pair_dataset(path, split, builder, streaming)
    return PairRecords(dataset, columns, max_pairs=max_pairs, fingerprint=fingerprint, name=f"{path}:{split}",
                       base_dir=base)


class PairDataset:
    """Encoded pairs: pair p has a preferred and a dispreferred image (ids into the encoded cache) and a caption."""

    def __init__(self, encoded, winners: list[int], losers: list[int]):
        if not winners:
            raise DataError(f"the cache {encoded.folder} holds no complete pair (both images of every pair were "
                            "skipped, or all were ties); check the data")
        self.encoded = encoded
        self.winners = torch.tensor(winners, dtype=torch.long)
        self.losers = torch.tensor(losers, dtype=torch.long)

    @property
    def num_images(self) -> int:
        """What the trainer orders and batches: pairs."""
        return len(self.winners)

    num_pairs = num_images

    def latents(self, pair_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(preferred, dispreferred) latents, each [len(pair_ids), C, h, w]."""
        ids = torch.as_tensor(pair_ids, dtype=torch.long)
        return self.encoded.latents(self.winners[ids]), self.encoded.latents(self.losers[ids])

    def caption_ids(self, pair_ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.encoded.caption_ids_of(int(i))[0] for i in self.winners[pair_ids].tolist()])

    def captions(self, pair_ids: torch.Tensor) -> list[str]:
        return [self.encoded.captions[i] for i in self.caption_ids(pair_ids).tolist()]

    def text(self, pair_ids: torch.Tensor) -> TextCond:
        return self.encoded.text(self.caption_ids(pair_ids))

    def batch_files(self, pair_ids: torch.Tensor) -> list[tuple[str, list[str]]]:
        """(image file, caption) of both images of each pair: what an error about a batch names."""
        out = []
        for p in torch.as_tensor(pair_ids).tolist():
            caption = self.captions(torch.tensor([p]))
            out += [(str(self.encoded.image_paths[int(self.winners[p])]), caption),
                    (str(self.encoded.image_paths[int(self.losers[p])]), caption)]
        return out


def build_or_load_pairs(source: PairRecords, encoder, resolution: int, cache_root, **cache_options) -> PairDataset:
    """Encode both images of every pair once (data.cache.build_or_load_cache) and pair them up again."""
    encoded = build_or_load_cache(source, encoder, resolution, cache_root, **cache_options)
    return PairDataset(encoded, *match_pairs(list(_names(source)), [str(p) for p in encoded.image_paths]))


def _names(source: PairRecords) -> Iterator[str]:
    """The record names in order, without decoding images (the records of a pass, their paths only)."""
    for record in source:
        yield str(record.path)


def match_pairs(record_names: list[str], kept_names: list[str]) -> tuple[list[int], list[int]]:
    """(winner ids, loser ids) in the cache, from the records' names (winner, loser, winner, ...) and the names of the
    images the cache kept, in order: the cache keeps a subsequence, so a greedy walk finds each record's id (an image
    that appears twice has the same fate both times). Pairs with a skipped image are dropped, with a warning."""
    position, kept_id = 0, []
    for name in record_names:
        if position < len(kept_names) and kept_names[position] == name:
            kept_id.append(position)
            position += 1
        else:
            kept_id.append(None)
    winners, losers, dropped = [], [], 0
    for w, l in zip(kept_id[0::2], kept_id[1::2]):
        if w is None or l is None:
            dropped += 1
        else:
            winners.append(w)
            losers.append(l)
    if dropped:
        log.warning("dropped %d of %d pairs whose preferred or dispreferred image could not be used", dropped,
                    len(record_names) // 2)
    return winners, losers
