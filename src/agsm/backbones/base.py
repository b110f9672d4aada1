"""What every backbone adapter shares: text conditioning as one batched value, the adapter protocol, and the base
class of the UNet and MM-DiT adapters (a frozen stock pipeline, its device and dtype, the sizes stored with soft
tokens, the encoders' fingerprint, image encoding through its VAE). The choice of adapter is in factory.py."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Protocol

import torch


@dataclass
class TextCond:
    """Text conditioning for N captions: what the denoiser's text inputs need, batched along dim 0.

    embeds: [N, L, D] the context the denoiser attends to (encoder_hidden_states).
    pooled: [N, P] pooled embeddings (SDXL, SD3), or None.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def __getitem__(self, index) -> "TextCond":
        return self._map(lambda t: t[index])

    def to(self, *args, **kwargs) -> "TextCond":
        return self._map(lambda t: t.to(*args, **kwargs))

    @staticmethod
    def cat(parts: list["TextCond"]) -> "TextCond":
        first = parts[0]
        return replace(first, **{f.name: None if getattr(first, f.name) is None
                                 else torch.cat([getattr(p, f.name) for p in parts]) for f in fields(first)})

    def tensors(self) -> dict[str, torch.Tensor]:
        """The non-empty fields by name (for saving to safetensors)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def _map(self, fn) -> "TextCond":
        return replace(self, **{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                                for f in fields(self)})


class Encoder(Protocol):
    """The part of a backbone the data cache needs."""

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, R, R] in [-1, 1] -> latents [B, C, h, w], already scaled for the denoiser."""

    def encode_text(self, captions: list[str]) -> TextCond:
        """captions -> their conditioning, N = len(captions)."""

    def fingerprint(self) -> str:
        """A short string that changes whenever the encoders' weights or configs do."""


TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def _dtype_keyword() -> str:
    """The name of from_pretrained's precision argument: diffusers 0.40 renamed torch_dtype to dtype (the old name
    now gives a FutureWarning); the earlier versions we support (>= 0.32) know only torch_dtype and would drop dtype."""
    import re

    from diffusers import __version__

    major_minor = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", __version__).groups())
    return "dtype" if major_minor >= (0, 40) else "torch_dtype"


class _ImageProcessorFallbackNotice(logging.Filter):
    """Drops transformers' notice that an image processor falls back to its PIL version for want of torchvision."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back to" not in record.getMessage()


def _quiet_image_processor_fallback() -> None:
    # Loading any SD pipeline imports diffusers modules that name CLIP/SigLIP image processors (the safety checker's
    # feature extractor, the IP-Adapter loader). We never run them, yet without torchvision transformers 5 warns on
    # every load that they fall back to their PIL versions: noise for our users. Only that notice is dropped.
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _ImageProcessorFallbackNotice) for f in logger.filters):
        logger.addFilter(_ImageProcessorFallbackNotice())


def load_stock_pipeline(path, dtype: torch.dtype = torch.float32, weights_variant: str | None = None):
    """DiffusionPipeline.from_pretrained on a local folder (model_source.resolve_model turns a Hub id into one);
    components saved as None (SD3 without T5, SD without a safety checker) are passed as None, as the stock loader
    requires. `weights_variant`: diffusers' `variant`, e.g. fp16 for the *.fp16.safetensors weights."""
    from diffusers import DiffusionPipeline

    from ..utils.progress import library_bars_off_in_logs

    path = Path(path)
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{path} is not a diffusers pipeline folder (no model_index.json); "
                                "pass a local folder saved with save_pretrained")
    index = json.loads(index_file.read_text())
    absent = {name: None for name, value in index.items() if isinstance(value, list) and value[0] is None}
    if "safety_checker" in index:  # never used here: evaluation follows the paper, without the NSFW filter
        absent["safety_checker"] = None
    extra = {"requires_safety_checker": False} if "requires_safety_checker" in index else {}
    if weights_variant:
        extra["variant"] = weights_variant
    _quiet_image_processor_fallback()
    with library_bars_off_in_logs():
        return DiffusionPipeline.from_pretrained(str(path), **{_dtype_keyword(): dtype}, **absent, **extra)


class PipelineBackbone:
    """Base of the adapters: subclasses set family, architecture, token_width, num_train_timesteps and
    `denoiser` (the module tokens go into) before calling `_freeze()`."""

    family = "?"
    trained_on: dict | None = None  # the model folder, variant and denoiser hash (variants.trained_on), when known

    def _freeze(self) -> None:
        for name in ("vae", self.denoiser_name, *TEXT_ENCODERS):
            module = getattr(self.pipe, name, None)
            if module is not None:
                module.requires_grad_(False)
                module.eval()

    @property
    def denoiser(self):
        return getattr(self.pipe, self.denoiser_name)

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    def to(self, device=None, dtype=None):
        self.pipe.to(device=device, dtype=dtype)
        return self

    def describe(self) -> dict:
        """Architecture sizes stored with soft tokens, checked when they are loaded."""
        return {"family": self.family, "architecture": self.architecture, "token_width": self.token_width,
                "num_train_timesteps": self.num_train_timesteps}

    def fingerprint(self) -> str:
        """Changes when the encoders' configs or weights change (hashes configs and a weight sample)."""
        digest = hashlib.sha256()
        for name in ("vae", *TEXT_ENCODERS):
            module = getattr(self.pipe, name, None)
            if module is None:
                continue
            digest.update(json.dumps(dict(module.config) if hasattr(module.config, "keys")
                                     else module.config.to_dict(), sort_keys=True, default=str).encode())
            for p in list(module.parameters())[:4] + list(module.parameters())[-4:]:
                digest.update(p.detach().float().flatten()[:64].cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, R, R] in [-1, 1] -> latents scaled (and shifted, SD3) as the denoiser expects."""
        vae = self.pipe.vae
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
        shift = vae.config.get("shift_factor") or 0.0
        return (latents - shift) * vae.config.scaling_factor
