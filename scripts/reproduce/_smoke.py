"""--smoke: every input a reproduction script takes, at toy size, in the real formats, built once under a folder.

Random toy pipelines of the real architectures (agsm.backbones.architectures.build_pipeline(arch, "toy"), saved
as diffusers folders), COCO train/val look-alikes (COCO's folders and captions json), Pick-a-Pic pairs as parquet
(caption, jpg_0 / jpg_1 as encoded bytes, label_0), PIE-Bench's mapping_file.json with run-length masks, GenEval's
metadata jsonl, and tiny random metric weights in the real layouts (agsm.metrics.tiny; LPIPS and DINO here).
Two measures have no tiny stand-in in the package and get one here: FID's Inception (per-channel pixel means
instead) and GenEval's external detector (a results.jsonl in GenEval's format judged by image brightness). SPO's
step-aware preference model, which agsm does not ship either, is a brightness scorer. Numbers from any of these
mean nothing; they only prove the pipeline runs and fills the table.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = ["a red circle", "two blue squares", "a green triangle", "a yellow square and a red circle",
            "three purple circles", "an orange triangle above a blue square", "a cat on a mat", "a dog on the left"]
# Training at toy size: two steps of two images, float32, every checkpoint kept small. Per method, what makes its
# inner loops short (SPO samples a trajectory per step, InPO inverts each image).
TRAIN = ["--train.steps", "2", "--train.images_per_step", "2", "--train.checkpoint_every", "2",
         "--train.mixed_precision", "no", "--train.gradient_checkpointing", "false", "--model.resolution", "null"]
METHOD_TRAIN = {"spo": ["--method.steps", "3", "--method.divert_start", "1", "--method.candidates", "2"],
                "inpo": ["--method.inversion_steps", "2"]}
EVAL = {"num": 4, "steps": 2, "batch_size": 4}
EDIT_STEPS = 4


def smoke_train_args(method: str) -> list[str]:
    return [*TRAIN, *METHOD_TRAIN.get(method, [])]


def prepare(root, architectures=("sd15", "sdxl", "sd3")) -> dict:
    """Build (once) every toy input under `root`; returns their paths by name."""
    root = Path(root)
    keep_dataset_cache_in(root / "hf-datasets-cache")
    paths = {"models": {arch: _toy_model(root / "models" / arch, arch) for arch in architectures}}
    paths["coco"] = _coco(root / "coco", "val2017", seed=1)
    paths["train_images"] = _coco(root / "coco", "train2017", seed=2) / "train2017"
    paths["train_captions"] = root / "coco" / "annotations" / "captions_train2017.json"
    paths["pairs"] = _pairs(root / "pickapic")
    paths["pie"] = _pie(root / "pie")
    paths["geneval_metadata"] = _geneval_metadata(root / "geneval" / "evaluation_metadata.jsonl")
    paths["metrics"] = {name: _tiny_metric(root / "metrics" / name, name)
                        for name in ("imagereward", "pickscore", "clip", "hpsv2")}
    paths["lpips"] = _tiny_lpips(root / "metrics" / "lpips")
    paths["dino"] = _tiny_dino(root / "metrics" / "dino")
    return paths


def keep_dataset_cache_in(folder: Path) -> None:
    """load_dataset's arrow cache under the smoke folder, not the user's home."""
    import datasets

    datasets.config.HF_DATASETS_CACHE = str(folder)


def fid_stand_in(images):
    """FID's feature extractor at toy size: [B, 3, H, W] in 0..1 -> the per-channel means [B, 3]."""
    return images.mean((2, 3))


def brightness_scorer(images, prompts, t):
    """SPO's step-aware scorer stand-in: brighter is preferred (20 points per grey level, to clear SPO's threshold)."""
    import torch

    return torch.tensor([20 * float(np.asarray(image, dtype=np.float32).mean()) / 255 for image in images])


def stand_in_geneval_results(export: Path, results: Path) -> Path:
    """GenEval's results.jsonl for an export folder, each image 'correct' when brighter than mid-grey."""
    lines = []
    for folder in sorted(p for p in Path(export).iterdir() if p.is_dir() and p.name.isdigit()):
        meta = json.loads((folder / "metadata.jsonl").read_text())
        for sample in sorted((folder / "samples").glob("*.png")):
            with Image.open(sample) as image:
                correct = bool(np.asarray(image.convert("L"), dtype=np.float32).mean() > 127.5)
            lines.append({"filename": str(sample), "tag": meta["tag"], "prompt": meta["prompt"], "correct": correct,
                          "reason": "smoke stand-in: brightness", "metadata": json.dumps(meta)})
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return results


def _toy_model(folder: Path, arch: str) -> Path:
    if not (folder / "model_index.json").is_file():
        from agsm.backbones.architectures import build_pipeline

        build_pipeline(arch, "toy").save_pretrained(folder)
    return folder


def _image(rng, size=(40, 30)) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _coco(root: Path, split: str, seed: int, n: int = 8) -> Path:
    """COCO's layout for one split: split/<id:012d>.jpg and annotations/captions_<split>.json, two captions each."""
    captions = root / "annotations" / f"captions_{split}.json"
    if captions.is_file():
        return root
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for k in range(n):
        image_id = 1000 * seed + k + 1
        name = f"{image_id:012d}.jpg"
        _image(rng).save(root / split / name, quality=95)
        images.append({"id": image_id, "file_name": name, "height": 30, "width": 40})
        annotations += [{"id": 2 * image_id, "image_id": image_id, "caption": CAPTIONS[k % len(CAPTIONS)]},
                        {"id": 2 * image_id + 1, "image_id": image_id, "caption": f"a photo number {k}"}]
    captions.parent.mkdir(parents=True, exist_ok=True)
    captions.write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


def _pairs(folder: Path, n: int = 6) -> Path:
    """Pick-a-Pic v2's parquet columns: caption, jpg_0 and jpg_1 (JPEG bytes), label_0 (1, 0 or 0.5 for a tie)."""
    target = folder / "train-00000.parquet"
    if target.is_file():
        return folder
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)

    def jpeg() -> bytes:
        buffer = io.BytesIO()
        _image(rng, (32, 32)).save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()

    table = pa.table({"caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(n)],
                      "jpg_0": [jpeg() for _ in range(n)], "jpg_1": [jpeg() for _ in range(n)],
                      "label_0": [float(i % 2) for i in range(n)]})
    pq.write_table(table, target)
    return folder


def _pie(root: Path, size: int = 32) -> Path:
    """PIE-Bench's data folder: mapping_file.json (prompts with [ ] marks, run-length masks), annotation_images/."""
    if (root / "mapping_file.json").is_file():
        return root
    rng = np.random.default_rng(4)
    entries = {}
    for k, type_id in enumerate(("0", "6")):
        key = f"{k:012d}"
        folder = root / "annotation_images" / f"{type_id}_group"
        folder.mkdir(parents=True, exist_ok=True)
        _image(rng, (size, size)).save(folder / f"{key}.png")
        mask = np.zeros((size, size), bool)
        mask[8:20, 6 + k:24] = True
        entries[key] = {"image_path": f"{type_id}_group/{key}.png", "original_prompt": f"a [red] circle {k}",
                        "editing_prompt": f"a [blue] circle {k}", "editing_instruction": "make it blue",
                        "editing_type_id": type_id, "blended_word": "circle circle", "mask": _rle(mask)}
    (root / "mapping_file.json").write_text(json.dumps(entries))
    return root


def _rle(mask: np.ndarray) -> list[int]:
    """PIE-Bench's mask encoding: (start, length) pairs of the 1-runs over the row-major flattened mask."""
    flat = np.concatenate([[0], mask.reshape(-1).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flat))
    return [int(v) for start, end in zip(edges[0::2], edges[1::2]) for v in (start, end - start)]


def _geneval_metadata(path: Path) -> Path:
    if path.is_file():
        return path
    lines = [{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
             {"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}],
              "prompt": "a photo of a cat and a dog"},
             {"tag": "counting", "include": [{"class": "dog", "count": 2}], "prompt": "a photo of two dogs"},
             {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}],
              "prompt": "a photo of a red car"},
             {"tag": "position", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1,
                                                                             "position": ["left of", 0]}],
              "prompt": "a photo of a dog left of a cat"},
             {"tag": "color_attr", "include": [{"class": "car", "count": 1, "color": "blue"},
                                               {"class": "cat", "count": 1, "color": "red"}],
              "prompt": "a photo of a blue car and a red cat"}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _tiny_metric(folder: Path, name: str) -> Path:
    if not folder.is_dir():
        from agsm.metrics.tiny import write_tiny_weights

        write_tiny_weights(name, folder)
    return folder


def _tiny_lpips(folder: Path) -> Path:
    """LPIPS files in their real layouts (the torchvision SqueezeNet checkpoint and lin<k>.model.1.weight), random."""
    if (folder / "squeeze.pth").is_file():
        return folder
    import torch
    from agsm.metrics.lpips_net import LPIPS

    torch.manual_seed(0)
    model = LPIPS("squeeze")
    folder.mkdir(parents=True, exist_ok=True)
    backbone = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(10, 512, 1, 1)
    torch.save(backbone, folder / "squeezenet1_1-smoke.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand_like(lin.weight) for i, lin in enumerate(model.lins)},
               folder / "squeeze.pth")
    return folder


def _tiny_dino(folder: Path) -> Path:
    """A 2-layer transformers ViT in DINO's folder layout (the structure distance reads its keys)."""
    if not (folder / "config.json").is_file():
        import torch
        from transformers import ViTConfig, ViTModel

        torch.manual_seed(0)
        config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           image_size=224, patch_size=16)
        ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder
