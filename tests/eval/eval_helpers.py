"""Helpers for the evaluation runner tests: COCO and PIE-Bench look-alikes, fake metrics, tiny metric weights."""
import json

import numpy as np
import torch
from PIL import Image

CAPTIONS = ["a red circle", "two blue squares", "a green triangle", "a yellow square and a red circle",
            "three purple circles", "an orange triangle above a blue square", "a cat", "a dog on the left",
            "one green square", "four red triangles"]


def write_coco(root, n=10, seed=0):
    """COCO's layout with n images (ids out of order, 40x30 jpgs) and two captions each, annotations shuffled so
    that json order and annotation-id order pick different captions for some images."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    ids = [int(i) for i in rng.permutation(np.arange(1, 1000))[:n]]
    images, anns = [], []
    for k, image_id in enumerate(ids):
        name = f"{image_id:012d}.jpg"
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val2017" / name, quality=95)
        images.append({"id": image_id, "file_name": name, "height": 30, "width": 40})
        anns.append({"id": 2 * k + 100, "image_id": image_id, "caption": CAPTIONS[k % len(CAPTIONS)] + " \n"})
        anns.append({"id": 2 * k + 1, "image_id": image_id, "caption": f"another caption {k}"})
    order = rng.permutation(len(anns))
    data = {"images": images, "annotations": [anns[i] for i in order]}
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(data))
    return root


class FakeMetric:
    """Same interface as agsm.metrics' metrics: a deterministic function of the pixels and the prompt."""

    def __init__(self, name):
        self.name = name

    def score(self, images, prompts):
        pixels = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).mean() for im in images])
        return pixels / 255 + torch.tensor([len(p) for p in prompts], dtype=torch.float32) / 100


def fake_loader(calls=None):
    def load(name, weights, device, dtype, batch_size):
        if calls is not None:
            calls.append(name)
        return FakeMetric(name)
    return load


def fake_extractor(images):
    """[B, 3, H, W] in 0..1 -> [B, 12]: per-channel means, stds, and two pooled quadrants."""
    pooled = torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)[:, :6]
    return torch.cat([images.mean((2, 3)), images.std((2, 3)), pooled], dim=1)


def encode_rle(mask):
    """PIE-Bench's run-length encoding of a boolean [H, W] mask: (start, length) pairs over the flat image."""
    flat = np.concatenate([[0], mask.reshape(-1).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flat))
    starts, ends = edges[0::2], edges[1::2]
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


def write_pie(root, size=32):
    """PIE-Bench's layout with two entries (editing types 0 and 6), 32x32 sources, a box mask each."""
    rng = np.random.default_rng(1)
    entries = {}
    for k, (key, type_id, box) in enumerate([("000000000001", "6", (8, 20, 10, 24)),
                                             ("000000000000", "0", (4, 12, 4, 30))]):
        folder = root / "annotation_images" / f"{type_id}_group"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{key}.png")
        mask = np.zeros((size, size), bool)
        mask[box[0]:box[1], box[2]:box[3]] = True
        entries[key] = {"image_path": f"{type_id}_group/{key}.png", "original_prompt": f"a [red] circle {k}",
                        "editing_prompt": f"a [blue] circle {k}", "editing_instruction": "make it blue",
                        "editing_type_id": type_id, "blended_word": "circle circle", "mask": encode_rle(mask)}
    (root / "mapping_file.json").write_text(json.dumps(entries))
    return root


def save_tiny_lpips(folder, net="squeeze", seed=0):
    """Random weights in the real files' layouts: a torchvision-style checkpoint (features.* + classifier.*)
    and LPIPS' linear layers (lin<k>.model.1.weight, non-negative as the trained ones)."""
    from agsm.metrics.lpips_net import LPIPS

    torch.manual_seed(seed)
    model = LPIPS(net)
    for p in model.features.parameters():
        torch.nn.init.normal_(p, std=0.1)
    folder.mkdir(parents=True, exist_ok=True)
    backbone = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(10, 512, 1, 1)
    torch.save(backbone, folder / {"alex": "alexnet-tiny.pth", "vgg": "vgg16-tiny.pth",
                                   "squeeze": "squeezenet1_1-tiny.pth"}[net])
    torch.save({f"lin{i}.model.1.weight": torch.rand_like(lin.weight) for i, lin in enumerate(model.lins)},
               folder / f"{net}.pth")
    return folder


def save_tiny_dino(folder):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=224, patch_size=16)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder
