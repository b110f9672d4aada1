"""Readers that turn a user's image-caption data into `Record`s (an image and all its captions).

Two layouts on disk are read here:
- a Hugging Face imagefolder: `root/metadata.jsonl`, one JSON object per line with `file_name` and `text`
  (a caption, or a list of captions);
- COCO captions: an image folder plus a captions json with `images` (id, file_name) and `annotations`
  (image_id, caption).
Hugging Face `datasets` (hf_datasets.py) give a `RecordSource` instead of a list: records read in order, one
pass at a time, whose images may be held in memory rather than in files.

Every image keeps all its captions; training draws one of them at random each time it uses the image.
Problems in the data are errors that name the file, line or annotation and say what to do.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .errors import DataError
from .images import ImageSource

log = logging.getLogger("agsm.data")

_EXAMPLE_LINE = '{"file_name": "cat.png", "text": "a cat on a mat"}'


@dataclass(frozen=True)
class Record:
    """One image and its captions (at least one, none blank).

    path: the image file; for an image held in memory, the name errors and the cache index give it.
    image: the image itself when it is not read from `path`: an encoded file's bytes or a decoded PIL image.
    """

    path: Path
    captions: tuple[str, ...]
    image: bytes | object | None = field(default=None, repr=False, compare=False)

    @property
    def image_source(self) -> ImageSource:
        """What `images.load_image` opens: the in-memory image, else the file."""
        return self.path if self.image is None else self.image


class RecordSource(Protocol):
    """Records read in order, one pass per iteration, without holding them all: a (streamed) dataset.

    The cache builder takes one in place of a list of records and iterates it once."""

    size: int | None  # how many records a pass yields, when known (for progress)

    def __iter__(self) -> Iterator[Record]: ...

    def fingerprint(self) -> str:
        """Changes whenever the records (images or captions) would: part of the cache key."""


def read_imagefolder(root: str | Path) -> list[Record]:
    """Read `root/metadata.jsonl` (Hugging Face imagefolder layout) into records, in file order.

    Several lines naming the same `file_name` are merged into one record with all their captions.
    """
    root = Path(root)
    meta = root / "metadata.jsonl"
    if not meta.is_file():
        raise DataError(f"no metadata.jsonl in {root}; write one JSON line per image, e.g. {_EXAMPLE_LINE} "
                        "(`agsm shapes data --out DIR` writes a ShapesWorld one); for COCO images pass "
                        "--data.captions <captions json>, for a Hugging Face dataset --data.format hf")
    captions_of: dict[str, list[str]] = {}  # insertion-ordered: records come out in file order
    with meta.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{meta} line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg}); each line must be one object like "
                                f"{_EXAMPLE_LINE}") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}; "
                                f"each line must look like {_EXAMPLE_LINE}")
            missing = [k for k in ("file_name", "text") if k not in row]
            if missing:
                raise DataError(f"{where}: missing {', '.join(repr(k) for k in missing)}; "
                                f"every line needs 'file_name' and 'text', e.g. {_EXAMPLE_LINE}")
            name = row["file_name"]
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"{where}: 'file_name' must be a non-empty string, got {name!r}")
            texts = _captions(row["text"], f"{where}: ", f"for {name!r}", "'text'")
            if not (root / name).is_file():
                raise DataError(f"{where}: {name!r} does not exist in {root}; "
                                "fix the file_name or add the image")
            captions_of.setdefault(name, []).extend(texts)
    if not captions_of:
        raise DataError(f"{meta} has no entries; write one JSON line per image, e.g. {_EXAMPLE_LINE}")
    return [Record(root / name, tuple(caps)) for name, caps in captions_of.items()]


def read_coco(images_dir: str | Path, captions_json: str | Path) -> list[Record]:
    """Read COCO captions: one record per image with all its captions, in the order of `images`.

    Images without any caption are skipped (and counted in the log); an empty caption or an image file
    that is not in `images_dir` is an error.
    """
    images_dir, captions_json = Path(images_dir), Path(captions_json)
    if not captions_json.is_file():
        raise DataError(f"COCO captions file {captions_json} does not exist; pass the path of a captions "
                        "json such as annotations/captions_train2017.json")
    if not images_dir.is_dir():
        raise DataError(f"COCO image folder {images_dir} does not exist; pass the folder holding the images "
                        "named in the captions json")
    try:
        data = json.loads(captions_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{captions_json}: not valid JSON ({e.msg} at line {e.lineno}); "
                        "pass a COCO captions json") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise DataError(f"{captions_json}: expected a JSON object with lists 'images' and 'annotations' "
                        "(COCO captions format)")

    files: dict = {}  # image id -> file_name, in the order of `images`
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise DataError(f"{captions_json}: images[{i}] needs an 'id' and a 'file_name', got {img!r}")
        files[img["id"]] = img["file_name"]

    captions: dict = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DataError(f"{captions_json}: annotations[{i}] needs an 'image_id' and a 'caption', got {ann!r}")
        ann_name = f"annotation {ann['id']}" if "id" in ann else f"annotations[{i}]"
        image_id = ann["image_id"]
        if image_id not in files:
            raise DataError(f"{captions_json}: {ann_name} refers to image_id {image_id!r}, which is not in "
                            "'images'; add the image or remove the annotation")
        where = f"{captions_json}: {ann_name}: "
        captions.setdefault(image_id, []).extend(
            _captions(ann["caption"], where, f"for image {image_id!r} ({files[image_id]!r})", "'caption'"))

    records, uncaptioned = [], []
    for image_id, name in files.items():
        if image_id not in captions:
            uncaptioned.append(name)
            continue
        path = images_dir / name
        if not path.is_file():
            raise DataError(f"{captions_json}: image {image_id!r} file {name!r} does not exist in {images_dir}; "
                            "pass the image folder that matches this captions json")
        records.append(Record(path, tuple(captions[image_id])))
    if uncaptioned:
        log.warning("%s: skipped %d image(s) with no caption (e.g. %s)", captions_json, len(uncaptioned),
                    ", ".join(uncaptioned[:3]))
    if not records:
        raise DataError(f"{captions_json}: no image has a caption; check that it is a captions json "
                        "(not instances or keypoints)")
    return records


def _captions(value, where: str, of: str, key: str) -> list[str]:
    """A caption field (a string or a list of strings) as stripped strings; blank ones are errors."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where}{key} {of} must be a string or a list of strings, got {value!r}")
    texts = [t.strip() for t in texts]
    if not texts or not all(texts):
        raise DataError(f"{where}empty caption {of}; give every image a non-empty {key}")
    return texts
