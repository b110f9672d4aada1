"""PIE-Bench's local copy: mapping_file.json + annotation_images/, and its run-length encoded masks.

Layout (PIE-Bench's data folder): DIR/mapping_file.json maps an id to {image_path, original_prompt, editing_prompt,
editing_instruction, editing_type_id, blended_word, mask}; the image is DIR/annotation_images/<image_path>.
Prompts mark the edited words with [ ]: the marks are removed before use.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAPPING = "mapping_file.json"
IMAGES = "annotation_images"
EDITING_TYPES = {"0": "random", "1": "change object", "2": "add object", "3": "delete object",
                 "4": "change attribute content", "5": "change attribute pose", "6": "change attribute color",
                 "7": "change attribute material", "8": "change background", "9": "change style"}


def decode_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """PIE-Bench's mask: pairs (start, length) of 1s over the row-major flattened image, then the one-pixel
    border set to 1 (PIE-Bench does this to absorb annotation errors at the edges). float32 [H, W] of 0/1."""
    if len(rle) % 2:
        raise ValueError(f"a PIE-Bench mask holds (start, length) pairs, got {len(rle)} numbers")
    flat = np.zeros(height * width, np.float32)
    for start, length in zip(rle[0::2], rle[1::2]):
        flat[start:start + length] = 1.0
    mask = flat.reshape(height, width)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 1.0
    return mask


def strip_marks(prompt: str) -> str:
    return prompt.replace("[", "").replace("]", "")


def read_mapping(pie_dir, types: list[str] | None = None, num: int | None = None) -> list[dict]:
    """[{key, index, image, source_prompt, target_prompt, editing_type_id, mask_rle}] sorted by key; `index` is
    the position among all entries (so an image keeps its seed in any subset); `types` keeps those editing types."""
    root = Path(pie_dir)
    path = root / MAPPING
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: --pie must be PIE-Bench's data folder holding {MAPPING} and "
                                f"{IMAGES}/")
    mapping = json.loads(path.read_text())
    if types:
        unknown = sorted(set(types) - set(EDITING_TYPES))
        if unknown:
            raise ValueError(f"--types {','.join(unknown)}: PIE-Bench's editing types are 0-9 ({EDITING_TYPES})")
    items = []
    for index, key in enumerate(sorted(mapping)):
        entry = mapping[key]
        if types and str(entry["editing_type_id"]) not in types:
            continue
        image = root / IMAGES / entry["image_path"]
        if not image.is_file():
            raise FileNotFoundError(f"{image} (entry {key} of {path}) is missing; copy PIE-Bench's {IMAGES}/ whole")
        items.append({"key": key, "index": index, "image": image,
                      "source_prompt": strip_marks(entry["original_prompt"]),
                      "target_prompt": strip_marks(entry["editing_prompt"]),
                      "editing_type_id": str(entry["editing_type_id"]), "mask_rle": entry["mask"]})
    if num is not None:
        if num < 1:
            raise ValueError(f"--num {num} must be >= 1")
        items = items[:num]
    if not items:
        raise ValueError(f"no PIE-Bench entries left in {path} with --types {types}")
    return items
