"""Hugging Face `datasets` as a training source: rows of (image, caption or captions) read as `Record`s.

    source = read_hf_dataset("my_saved_dataset")                        # a Dataset.save_to_disk folder
    source = read_hf_dataset("data/*.parquet", builder="parquet")       # any file load_dataset reads
    source = read_hf_dataset("user/name", streaming=True, max_images=10_000)  # the hub, read as a stream
    data = build_or_load_cache(source, backbone, 512, "cache")

`data.path` may be a folder written by `Dataset.save_to_disk` (or `DatasetDict.save_to_disk`), anything
`load_dataset` reads (an imagefolder, a folder of parquet/csv/json files, one such file, a glob with
`builder`), or a hub dataset id (online, or offline from the local datasets cache). Images come as the dataset
stores them: encoded bytes in memory (decoded by the cache builder's threads, never all at once), paths to
files, or PIL images. Captions are a string or a list of strings per row.

`HFRecords` is a `RecordSource`: each iteration is one pass over the rows, and its fingerprint, part of the
cache key, is the dataset's own (datasets derives it from the data files and their modification times, or
from the content and every transform applied), plus the size and mtime of image files that rows only name.
A dataset without a fingerprint (an IterableDataset built in Python) is hashed row by row instead: its image
bytes and captions, read in one extra pass.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError
from .sources import Record, _captions

log = logging.getLogger("agsm.data")

# Which load_dataset builder reads a single file of this kind (a folder lets load_dataset infer it).
BUILDER_OF_SUFFIX = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
                     ".arrow": "arrow", ".txt": "text"}
SAVED_MARKERS = ("state.json", "dataset_dict.json")  # what Dataset(Dict).save_to_disk writes at the top
ROWS_PER_READ = 64  # rows fetched per read: arrow batches are cheap, and a stream holds only this many


def read_hf_dataset(path: str | Path, *, split: str = "train", image_column: str = "image",
                    caption_column: str = "text", builder: str = "", streaming: bool = False,
                    max_images: int | None = None) -> "HFRecords":
    """Open a Hugging Face dataset (see the module docstring for what `path` may be) as records.

    Errors name the path and say what to do: nothing there, the hub offline, an unknown split, a missing
    column (listing the dataset's columns)."""
    path = str(path)
    if not path:
        raise DataError("data.path is empty; give a save_to_disk folder, a folder or file load_dataset reads, or a "
                        "hub dataset id")
    label = f"{path}:{split}"
    saved = Path(path)
    if saved.is_dir() and any((saved / marker).is_file() for marker in SAVED_MARKERS):
        if builder:
            raise DataError(f"{path} was written by save_to_disk and is read as such; remove data.hf_builder "
                            f"({builder!r})")
        dataset, fingerprint = _open_saved(saved, split, streaming)
    else:
        dataset, fingerprint = _open_with_load_dataset(path, split, builder, streaming)
    base = saved if saved.is_dir() else Path(path).parent  # relative image paths in csv/json rows start here
    return HFRecords(dataset, image_column, caption_column, max_images=max_images, fingerprint=fingerprint,
                     name=label, base_dir=base)


class HFRecords:
    """The rows of a Hugging Face Dataset or IterableDataset as `Record`s, in order, `ROWS_PER_READ` at a time.

    fingerprint: the dataset's identity for the cache key; None takes `dataset._fingerprint`, or failing that
    hashes the rows' images and captions. base_dir: where relative image paths in rows are looked up."""

    def __init__(self, dataset, image_column: str = "image", caption_column: str = "text", *,
                 max_images: int | None = None, fingerprint: str | None = None, name: str = "dataset",
                 base_dir: str | Path | None = None):
        import datasets

        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be >= 1 (or None for every row), got {max_images}")
        self.name, self.image_column, self.caption_column = name, image_column, caption_column
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.streaming = isinstance(dataset, datasets.IterableDataset)
        columns = _column_names(dataset)
        missing = [c for c in (image_column, caption_column) if c not in columns]
        if missing:
            options = {image_column: "data.image_column", caption_column: "data.caption_column"}
            raise DataError(f"{name} has no column {' or '.join(repr(c) for c in missing)}; its columns are "
                            f"{columns}: set {' and '.join(options[c] for c in missing)} to the column holding "
                            f"the {'images' if image_column in missing else 'captions'}"
                            + (" and the captions" if len(missing) == 2 else ""))
        if fingerprint is None and not self.streaming:
            fingerprint = getattr(dataset, "_fingerprint", None)
        self._own_fingerprint = fingerprint
        dataset = dataset.select_columns([image_column, caption_column])
        feature = (dataset.features or {}).get(image_column)
        if isinstance(feature, datasets.Image):
            # Raw bytes (or a file path) per row: the cache builder decodes them in its threads, not here.
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        if max_images is not None:
            dataset = dataset.take(max_images) if self.streaming else dataset.select(range(min(max_images,
                                                                                               len(dataset))))
        self.dataset, self.max_images = dataset, max_images
        self.size = _known_size(dataset, max_images)
        self._fingerprint: str | None = None

    def __iter__(self) -> Iterator[Record]:
        row = 0
        for rows in self.dataset.iter(batch_size=ROWS_PER_READ):
            for image, caption in zip(rows[self.image_column], rows[self.caption_column]):
                where = f"{self.name} row {row}: "
                texts = tuple(_captions(caption, where, f"for row {row}", repr(self.caption_column)))
                path, data = self._image(image, row)
                yield Record(path, texts, data)
                row += 1

    def fingerprint(self) -> str:
        """The dataset's fingerprint plus what it does not cover (files rows name; the columns and cap chosen)."""
        if self._fingerprint is None:
            own = self._own_fingerprint
            if own is None:
                log.info("%s has no fingerprint; hashing its images and captions to key the cache (one extra pass)",
                         self.name)
                own = "rows-" + self._hash_rows()
            parts = {"dataset": own, "image_column": self.image_column, "caption_column": self.caption_column,
                     "max_images": self.max_images, "files": self._referenced_files_hash()}
            self._fingerprint = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return self._fingerprint

    def _image(self, value, row: int):
        """(name or file path, in-memory image or None) of one row's image value."""
        from PIL import Image

        if isinstance(value, dict) and ("bytes" in value or "path" in value):  # datasets' Image(decode=False)
            if value.get("bytes") is not None:
                return Path(f"{self.name}[{row}]"), bytes(value["bytes"])
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return Path(f"{self.name}[{row}]"), bytes(value)
        if isinstance(value, Image.Image):
            return Path(f"{self.name}[{row}]"), value
        if isinstance(value, str) and value:
            return self._file(value), None
        raise DataError(f"{self.name} row {row}: the {self.image_column!r} value is {type(value).__name__} "
                        f"{str(value)[:80]!r}, not an image; give a column of images (datasets.Image), image bytes "
                        "or image file paths (data.image_column)")

    def _file(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) or "://" in path else self.base_dir / path

    def _referenced_files_hash(self) -> str | None:
        """Size and mtime of the image files that rows only name (their content is outside the dataset's
        fingerprint); None when every image is held in the dataset."""
        names = self._referenced_files()
        if not names:
            return None
        h = hashlib.sha256()
        for name in names:
            path = self._file(name)
            try:
                stat = path.stat()
                stamp = [stat.st_size, stat.st_mtime_ns]
            except OSError:
                stamp = None
            h.update(json.dumps([str(path), stamp]).encode())
        return h.hexdigest()

    def _referenced_files(self) -> list[str]:
        import datasets

        feature = (self.dataset.features or {}).get(self.image_column)
        if not self.streaming:
            # The memory-mapped arrow column, before any row selection (gathering rows would copy image bytes):
            # file paths are read without touching the bytes. Files of unselected rows only widen the key.
            import pyarrow.compute as pc

            column = self.dataset.data.column(self.image_column)
            if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
                return [p for p in column.to_pylist() if p]
            if isinstance(feature, datasets.Image):
                named = pc.and_(pc.is_null(pc.struct_field(column, "bytes")),
                                pc.is_valid(pc.struct_field(column, "path")))
                return pc.struct_field(column, "path").filter(named).to_pylist()
            return []
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            # A stream of csv/json rows naming files: one pass over that text column (no images are read).
            return [p for rows in self.dataset.select_columns([self.image_column]).iter(batch_size=1024)
                    for p in rows[self.image_column] if p]
        return []  # a stream of datasets.Image: its files are the data files the fingerprint covers

    def _hash_rows(self) -> str:
        from .cache import image_digest

        h = hashlib.sha256()
        for record in self:
            image = image_digest(record.image) if record.image is not None else str(record.path)
            h.update(json.dumps([image, list(record.captions)]).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        size = "unknown" if self.size is None else self.size
        return f"HFRecords({self.name}, rows={size}, streaming={self.streaming})"


def _column_names(dataset) -> list[str]:
    columns = dataset.column_names
    if columns is None:  # a stream whose features are not declared: the first row says
        first = next(iter(dataset.take(1)), None)
        columns = list(first) if first is not None else []
    return list(columns)


def _known_size(dataset, max_images: int | None) -> int | None:
    """Rows a pass yields, for the progress bar: a Dataset's length, or a stream's recorded split size."""
    try:
        return len(dataset)
    except TypeError:
        splits = getattr(dataset.info, "splits", None) or {}
        split = splits.get(str(dataset.split)) if getattr(dataset, "split", None) else None
        rows = getattr(split, "num_examples", None) or None
        return min(rows, max_images) if rows and max_images else rows


def _open_saved(folder: Path, split: str, streaming: bool):
    """A save_to_disk folder: a Dataset, or a DatasetDict whose `split` is taken."""
    import datasets

    saved = datasets.load_from_disk(str(folder))
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise DataError(f"{folder} has no split {split!r}; its splits are {sorted(saved)}: set data.split")
        saved = saved[split]
    # A saved dataset is memory-mapped, so it never holds all images in RAM; streaming reads it in order.
    return (saved.to_iterable_dataset() if streaming else saved), saved._fingerprint


def _open_with_load_dataset(path: str, split: str, builder: str, streaming: bool):
    """Anything `load_dataset` reads; returns (dataset, fingerprint or None to take the dataset's own)."""
    import datasets

    name, options = _load_arguments(path, builder)
    try:
        if not streaming:
            return datasets.load_dataset(name, split=split, **options), None
        # What load_dataset(..., streaming=True) does, keeping the builder: its config id and hash are the
        # dataset's identity (data files with their mtimes or hub revision), as in a non-streamed fingerprint.
        dataset_builder = datasets.load_dataset_builder(name, **options)
        stream = dataset_builder.as_streaming_dataset(split=split)
        identity = [dataset_builder.name, dataset_builder.config_id, str(dataset_builder.config.version),
                    dataset_builder.hash, split]
        return stream, "builder-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise DataError(f"{path}: no split {split!r} ({exc}); set data.split to one of its splits") from None
        raise DataError(f"{path} cannot be read by load_dataset: {exc}") from exc
    except (FileNotFoundError, ConnectionError) as exc:
        raise DataError(_not_found_message(path, builder, exc)) from None


def _load_arguments(path: str, builder: str) -> tuple[str, dict]:
    """load_dataset's (path, options) for data.path and data.hf_builder."""
    local = Path(path)
    if local.is_dir():
        return (builder, {"data_dir": str(local)}) if builder else (str(local), {})
    if local.is_file() or glob.has_magic(path):
        if glob.has_magic(path) and not glob.glob(path):
            raise DataError(f"no file matches {path!r}; check data.path")
        builder = builder or BUILDER_OF_SUFFIX.get(local.suffix.lower(), "")
        if not builder:
            raise DataError(f"cannot tell which datasets builder reads {path!r}; set data.hf_builder (parquet, csv, "
                            f"json, arrow, imagefolder ...)")
        return builder, {"data_files": path}
    return (builder or path), ({"data_files": path} if builder else {})


def _not_found_message(path: str, builder: str, exc: Exception) -> str:
    from huggingface_hub import constants

    where = (f"data.path {path!r} is not a local folder or file, nor a hub dataset that could be loaded "
             f"({type(exc).__name__}: {str(exc)[:300]})")
    if constants.HF_HUB_OFFLINE:
        return (f"{where}. The hub is offline (HF_HUB_OFFLINE=1), so only local data and datasets already in the "
                "datasets cache can be read: give a local path (a save_to_disk folder, an imagefolder, parquet/csv/"
                "json files), or download the dataset while online (datasets.load_dataset(...).save_to_disk(...))")
    return f"{where}. Check the path or the hub id (and data.hf_builder {builder!r})"
