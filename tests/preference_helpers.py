"""Shared by the preference tests: a tiny backbone with a trainable LoRA (or whole UNet), fixed batches, a pairs
folder made of the fixture images, and a scorer that ranks images by brightness."""
import json
from pathlib import Path

import torch

from agsm.backbones.factory import load_backbone
from agsm.training.config import load_config
from agsm.objectives.preference_batch import PreferenceBatch, PromptBatch
from agsm.training.backbone_trainable import BackboneTrainable


def tuned(model_dir, params="lora", method="dpo", **method_options):
    """(config, backbone, trainable) for `method` on the fixture model, the LoRA's B set non-zero so that the policy
    differs from the reference from the start."""
    overrides = {"model": {"path": str(model_dir)}, "method": {"name": method, **method_options},
                 "tune": {"params": params}}
    config = load_config(None, overrides)
    backbone = load_backbone(model_dir)
    torch.manual_seed(0)
    trainable = BackboneTrainable(config, backbone)
    with torch.no_grad():
        for name, p in trainable.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return config, backbone, trainable


def pair_batch(backbone, b=2, seed=1) -> PreferenceBatch:
    g = torch.Generator().manual_seed(seed)
    shape = (b, backbone.denoiser.config.in_channels, 16, 16)
    texts = ["a red circle", "two blue squares", "a green square", "a yellow circle"][:b]
    return PreferenceBatch(torch.randn(shape, generator=g), torch.randn(shape, generator=g),
                           backbone.encode_text(texts), texts)


def prompt_batch(backbone, b=2) -> PromptBatch:
    texts = ["a red circle", "two blue squares", "a green square", "a yellow circle"][:b]
    return PromptBatch(backbone.encode_text(texts), texts)


def brightness(images, prompts, t):
    """A stand-in step-aware scorer: brighter images are preferred (20 points per grey level, so that the tiny
    model's small differences clear SPO's softmax threshold)."""
    import numpy as np

    return torch.tensor([20 * float(np.asarray(im, dtype=np.float32).mean()) for im in images])


def write_pairs_folder(folder: Path, image_folder: Path, n: int = 8) -> Path:
    """Pick-a-Pic layout over the fixture images: pair i is images 2i and 2i+1, label_0 alternating; one tie."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.loads(line) for line in (image_folder / "metadata.jsonl").read_text().splitlines()]
    rows = []
    for i in range(n):
        a, b = lines[2 * i], lines[2 * i + 1]
        rows.append({"caption": a["text"], "jpg_0": str(image_folder / a["file_name"]),
                     "jpg_1": str(image_folder / b["file_name"]), "label_0": 0.5 if i == n - 1 else i % 2})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
