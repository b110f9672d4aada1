"""Data: read image-caption sources into records, encode them once into a cache the trainer reads.

    records = read_imagefolder("my_data")            # or read_coco(images_dir, captions_json)
    data = build_or_load_cache(records, backbone, 512, "cache")
    z = data.latents(image_ids); c = data.text(data.draw_captions(image_ids, generator))
"""
from .cache import build_or_load_cache, content_hash
from .dataset import EncodedDataset
from .errors import DataError
from .sources import Record, read_coco, read_imagefolder

__all__ = ["DataError", "EncodedDataset", "Record", "build_or_load_cache", "content_hash", "read_coco",
           "read_imagefolder"]
