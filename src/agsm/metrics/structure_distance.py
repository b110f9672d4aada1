"""PIE-Bench's structure distance (from Splice, Tumanyan et al. 2022): the mean squared difference between the
self-similarity matrices of DINO ViT keys of two images.

Each image (0..1) is resized so its shorter side is 224 (bilinear), normalised with ImageNet's mean and std, and
run through the ViT; the keys of one layer's self-attention (the last layer by default, layer 11 of ViT-B/8 as
PIE-Bench uses; all tokens, CLS included, heads concatenated) are read with a forward hook on the stock key
projection; the self-similarity is the cosine similarity between every pair of tokens.

Weights: a local transformers folder of a DINO ViT (facebook/dino-vitb8 for PIE-Bench's numbers), loaded with
AutoModel.from_pretrained.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StructureDistance:
    def __init__(self, model, layer: int | None = None, short_side: int = 224):
        self.model = model.eval().requires_grad_(False)
        layers = _key_projections(model)
        self.layer = len(layers) - 1 if layer is None else layer
        if not 0 <= self.layer < len(layers):
            raise ValueError(f"DINO layer {layer} is outside the model's {len(layers)} layers (0..{len(layers) - 1})")
        self.key_module = layers[self.layer]
        self.short_side = short_side
        self._interpolate = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        """[3, H, W] in 0..1 -> [1, 3, h, w] resized (shorter side 224) and ImageNet-normalised."""
        h, w = image.shape[1:]
        scale = self.short_side / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self._device())

    def _device(self):
        return next(self.model.parameters()).device

    @torch.no_grad()
    def self_similarity(self, image: torch.Tensor) -> torch.Tensor:
        """[3, H, W] in 0..1 -> [T, T] cosine similarities of the layer's keys (T tokens incl. CLS)."""
        held = {}
        handle = self.key_module.register_forward_hook(lambda module, args, out: held.__setitem__("keys", out))
        try:
            extra = {"interpolate_pos_encoding": True} if self._interpolate else {}
            self.model(pixel_values=self._prepare(image), **extra)
        finally:
            handle.remove()
        keys = F.normalize(held["keys"][0].float(), dim=-1)  # [T, heads * head_dim]
        return keys @ keys.T

    def __call__(self, source: torch.Tensor, edited: torch.Tensor) -> float:
        return float(F.mse_loss(self.self_similarity(edited), self.self_similarity(source)))


def _key_projections(model) -> list:
    """The key projection of each encoder layer's self-attention, in layer order (transformers 5 names it
    layers.N.attention.k_proj, earlier versions encoder.layer.N.attention.attention.key)."""
    found = [(name, module) for name, module in model.named_modules()
             if name.endswith(("attention.k_proj", "attention.key"))]
    if not found:
        raise ValueError(f"{type(model).__name__} has no '...attention.k_proj' projections; the structure distance "
                         "needs a transformers ViT/DINO model (e.g. facebook/dino-vitb8)")
    return [module for _, module in found]


def load_structure_distance(folder, device: str = "cpu", layer: int | None = None) -> StructureDistance:
    from transformers import AutoModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"DINO weights: {folder} is not a transformers model folder (no config.json); "
                                "save facebook/dino-vitb8 there with save_pretrained")
    config = json.loads((folder / "config.json").read_text())
    extra = {"add_pooling_layer": False} if config.get("model_type") == "vit" else {}  # the pooler is unused
    return StructureDistance(AutoModel.from_pretrained(str(folder), **extra).to(device), layer)
