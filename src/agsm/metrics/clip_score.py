"""CLIP score and PickScore: cosine similarity of a stock transformers CLIPModel's image and text embeddings.

Weights layout
- clip: one folder with openai/clip-vit-large-patch14 in the Hugging Face layout (config.json, the model weights,
  tokenizer and preprocessor files). Score = max(100 * cos(image, text), 0), as torchmetrics' CLIPScore.
- pickscore: a folder with yuvalkirstain/PickScore_v1 (config.json + weights); its processor (the one of
  laion/CLIP-ViT-H-14-laion2B-s32B-b79K) in a `processor/` subfolder, or in the folder itself when that folder
  holds a preprocessor config. Mapping form: {"model": ..., "processor": ...}. Score = exp(logit_scale) * cos
  (about 21-23 for the real weights, the scale the paper reports).

    from agsm.metrics import load_metric
    metric = load_metric("clip", "weights/clip-vit-large-patch14")
    scores = metric.score(images, prompts)  # float32 [N]
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import ImageTextMetric
from .preprocess import clip_pixels
from .weights import Part, has_processor, resolve

CLIP_L14 = Part("model", ".", "model+processor", "the Hugging Face repo openai/clip-vit-large-patch14 "
                "(hf download openai/clip-vit-large-patch14 --local-dir FOLDER)")
PICKSCORE_MODEL = Part("model", ".", "model", "the Hugging Face repo yuvalkirstain/PickScore_v1 "
                       "(hf download yuvalkirstain/PickScore_v1 --local-dir FOLDER)")
VIT_H14_PROCESSOR = ("the Hugging Face repo laion/CLIP-ViT-H-14-laion2B-s32B-b79K (its tokenizer and "
                     "preprocessor files: hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K --include '*.json' "
                     "'*.txt' --local-dir FOLDER)")


class ClipEmbedder:
    """A CLIPModel and its processor on one device: L2-normalised float32 image and text embeddings."""

    def __init__(self, model, processor, device: torch.device, dtype: torch.dtype, torchvision_pixels: bool = False):
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        # The metrics whose originals preprocess with torchvision get its exact arithmetic (see preprocess.py).
        self.torchvision_pixels = torchvision_pixels
        self.device, self.dtype = device, dtype
        # Fixed-length padding keeps every batch the same shape, so batching cannot change a score.
        self.max_length = model.config.text_config.max_position_embeddings

    def pixels(self, images) -> torch.Tensor:
        if self.torchvision_pixels:
            return clip_pixels(images, self.model.config.vision_config.image_size)
        return self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def images(self, images) -> torch.Tensor:
        pixels = self.pixels(images)
        out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
        return F.normalize(out.pooler_output.float(), dim=-1)

    def texts(self, prompts) -> torch.Tensor:
        tokens = self.processor.tokenizer(list(prompts), padding="max_length", truncation=True,
                                          max_length=self.max_length, return_tensors="pt")
        out = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                           attention_mask=tokens["attention_mask"].to(self.device))
        return F.normalize(out.pooler_output.float(), dim=-1)

    def cosine(self, images, prompts) -> torch.Tensor:
        return (self.images(images) * self.texts(prompts)).sum(-1)


def load_embedder(model_dir: Path, processor_dir: Path, device, dtype, torchvision_pixels=False) -> ClipEmbedder:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_dir, dtype=dtype)
    return ClipEmbedder(model, CLIPProcessor.from_pretrained(processor_dir), device, dtype, torchvision_pixels)


class CLIPScore(ImageTextMetric):
    """max(100 * cos(image, text), 0) with CLIP ViT-L/14."""

    name = "clip"

    def __init__(self, weights, **options):
        super().__init__(**options)
        paths = resolve(self.name, weights, [CLIP_L14])
        self.clip = load_embedder(paths["model"], paths["model"], self.device, self.dtype)

    def _score_batch(self, images, prompts):
        return (100 * self.clip.cosine(images, prompts)).clamp(min=0)


class PickScore(ImageTextMetric):
    """exp(logit_scale) * cos(image, text) with the PickScore_v1 CLIP ViT-H/14."""

    name = "pickscore"

    def __init__(self, weights, **options):
        super().__init__(**options)
        paths = resolve(self.name, _pickscore_parts(weights), [PICKSCORE_MODEL, Part(
            "processor", "processor", "processor", VIT_H14_PROCESSOR)])
        self.clip = load_embedder(paths["model"], paths["processor"], self.device, self.dtype)
        self.scale = self.clip.model.logit_scale.exp().float().item()

    def _score_batch(self, images, prompts):
        return self.scale * self.clip.cosine(images, prompts)


def _pickscore_parts(weights):
    """A folder becomes {"model": folder, "processor": folder/processor, or the folder if it holds the processor}."""
    if isinstance(weights, Mapping):
        return weights
    root = Path(weights).expanduser()
    if not (root / "processor").is_dir() and has_processor(root):
        return {"model": root, "processor": root}
    return {"model": root, "processor": root / "processor"}
