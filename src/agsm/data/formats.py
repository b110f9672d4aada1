"""Which reader a data path needs when the config does not say (data.format left out).

A shipped config describes a recipe, not the user's data: it leaves data.format out, and the format follows the data
given on the command line. The rule, applied to the merged config (file and flags) before it is checked:
- data.path holds metadata.jsonl: an image folder (imagefolder);
- else data.captions is given: COCO (the images folder plus its captions json);
- else the default, imagefolder, whose reader says what a folder needs.
An explicit data.format always wins; a mismatch between it and the data is an error naming the option to change.
"""
from __future__ import annotations

from pathlib import Path

IMAGEFOLDER_INDEX = "metadata.jsonl"


def infer_data_format(raw: dict) -> dict:
    """`raw` (a config's nested dicts) with data.format set from the data when it is not given."""
    data = raw.get("data")
    if not isinstance(data, dict) or "format" in data:
        return raw
    inferred = guess_format(data.get("path"), data.get("captions"))
    return raw if inferred is None else {**raw, "data": {**data, "format": inferred}}


def guess_format(path, captions) -> str | None:
    """imagefolder, coco, or None (no sign either way: the default applies)."""
    if isinstance(path, str) and path and (Path(path) / IMAGEFOLDER_INDEX).is_file():
        return "imagefolder"
    if isinstance(captions, str) and captions:
        return "coco"
    return None


def is_imagefolder(path) -> bool:
    return bool(path) and (Path(path) / IMAGEFOLDER_INDEX).is_file()
