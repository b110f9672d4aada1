"""Data: read image-caption sources into records, encode them once into a cache the trainer reads.

    records = read_imagefolder("my_data")            # or read_coco(images_dir, captions_json)
    records = read_hf_dataset("my_dataset")          # a Hugging Face dataset (saved, files, hub; streamed or not)
    data = build_or_load_cache(records, backbone, 512, "cache")
    z = data.latents(image_ids); c = data.text(data.draw_captions(image_ids, generator))
"""
from .cache import build_or_load_cache, content_hash
from .dataset import EncodedDataset
from .errors import DataError
from .hf_datasets import HFRecords, read_hf_dataset
from .sources import Record, RecordSource, read_coco, read_imagefolder

__all__ = ["DataError", "EncodedDataset", "HFRecords", "Record", "RecordSource", "build_or_load_cache",
           "content_hash", "read_coco", "read_hf_dataset", "read_imagefolder"]
