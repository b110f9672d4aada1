"""COCO val2017 for the val5K protocol: the caption list and the FID reference images.

Layout: DIR/annotations/captions_val2017.json and DIR/val2017/*.jpg (cocodataset.org: annotations_trainval2017.zip
and val2017.zip). Protocol (docs/method.md): the first caption of each val2017 image, images sorted by id, the first N.
"First" is, by default, the first caption of that image in the order the json lists the annotations (what
pycocotools' imgToAnns[id][0] and a plain loop over the json give); `order="id"` takes the lowest annotation id.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

CAPTIONS = Path("annotations") / "captions_val2017.json"
IMAGES = Path("val2017")
ORDERS = ("json", "id")


def read_captions(coco_dir, num: int, order: str = "json") -> list[dict]:
    """[{index, image_id, file_name, annotation_id, caption}] for the first `num` val2017 images by id."""
    if order not in ORDERS:
        raise ValueError(f"caption order {order!r} is not one of {ORDERS}")
    path = Path(coco_dir) / CAPTIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: --coco must be a folder holding {CAPTIONS} and {IMAGES}/*.jpg "
                                "(COCO's annotations_trainval2017.zip and val2017.zip, unpacked)")
    data = json.loads(path.read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    first: dict[int, dict] = {}
    for ann in data["annotations"]:
        held = first.get(ann["image_id"])
        if held is None or (order == "id" and ann["id"] < held["id"]):
            first[ann["image_id"]] = ann
    ids = sorted(i for i in files if i in first)
    if num < 1 or num > len(ids):
        raise ValueError(f"--num {num} must be between 1 and the {len(ids)} captioned images of {path}")
    return [{"index": k, "image_id": i, "file_name": files[i], "annotation_id": first[i]["id"],
             "caption": " ".join(first[i]["caption"].split())} for k, i in enumerate(ids[:num])]


def reference_paths(coco_dir, items: list[dict]) -> list[Path]:
    """The val2017 image files of `items`, each checked to exist."""
    folder = Path(coco_dir) / IMAGES
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: FID needs the val2017 images (COCO's val2017.zip) there")
    paths = [folder / item["file_name"] for item in items]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from {folder}; unpack all of COCO's val2017.zip there")
    return paths


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """The largest centred square, resized to size x size (bicubic), in RGB: what FID compares against."""
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)


class CroppedImages(Sequence):
    """The reference images, read and cropped one at a time when indexed (5,000 at once would not fit)."""

    def __init__(self, paths: list[Path], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        with Image.open(self.paths[i]) as image:
            return center_crop_resize(image, self.size)
