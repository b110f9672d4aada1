"""Backbone adapter for UNet2DConditionModel pipelines: SD1.5 (epsilon or v) and SDXL.

It wraps a stock diffusers pipeline and exposes only what the objectives and the data cache need:
encode images and captions, sample timesteps, noise, the regression target, and one prediction.
Text encoding goes through the pipeline's own `encode_prompt`, so it matches inference exactly.
"""
from __future__ import annotations

import hashlib
import json

import torch

from .base import TextCond
from .parameterization import add_noise, parameterization_for


def unet_architecture(unet) -> str:
    """'sdxl' when the UNet takes pooled text and time ids, else 'sd15' (the SD1.x/2.x layout)."""
    return "sdxl" if unet.config.get("addition_embed_type") == "text_time" else "sd15"


class UNetBackbone:
    family = "unet"

    def __init__(self, pipe, resolution: int | None = None):
        self.pipe = pipe
        self.unet = pipe.unet
        self.architecture = unet_architecture(self.unet)
        self.token_width = self.unet.config.cross_attention_dim
        self.num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        self.alphas_cumprod = _alphas_cumprod(pipe.scheduler)
        self.param = parameterization_for(pipe.scheduler.config.prediction_type)
        self.resolution = resolution or self.unet.config.sample_size * pipe.vae_scale_factor
        for module in self._frozen_modules():
            module.requires_grad_(False)
            module.eval()

    @classmethod
    def from_pretrained(cls, path, dtype: torch.dtype = torch.float32, resolution: int | None = None):
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=dtype, safety_checker=None,
                                                 requires_safety_checker=False)
        return cls(pipe, resolution)

    def _frozen_modules(self):
        names = ("unet", "vae", "text_encoder", "text_encoder_2")
        return [m for m in (getattr(self.pipe, n, None) for n in names) if m is not None]

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def to(self, device=None, dtype=None) -> "UNetBackbone":
        self.pipe.to(device=device, dtype=dtype)
        return self

    def describe(self) -> dict:
        """Architecture sizes stored with soft tokens, checked when they are loaded."""
        return {"family": self.family, "architecture": self.architecture, "token_width": self.token_width,
                "num_train_timesteps": self.num_train_timesteps}

    def fingerprint(self) -> str:
        """Changes when the encoders' configs or weights change (hashes configs and a weight sample)."""
        digest = hashlib.sha256()
        for name in ("vae", "text_encoder", "text_encoder_2"):
            module = getattr(self.pipe, name, None)
            if module is None:
                continue
            digest.update(json.dumps(dict(module.config) if hasattr(module.config, "keys")
                                     else module.config.to_dict(), sort_keys=True, default=str).encode())
            for p in list(module.parameters())[:4] + list(module.parameters())[-4:]:
                digest.update(p.detach().float().flatten()[:64].cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ---- encoders (used once, by the data cache) ----
    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
        shift = vae.config.get("shift_factor") or 0.0
        return (latents - shift) * vae.config.scaling_factor

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> TextCond:
        out = self.pipe.encode_prompt(list(captions), device=self.device, num_images_per_prompt=1,
                                      do_classifier_free_guidance=False)
        if self.architecture == "sdxl":
            return TextCond(embeds=out[0], pooled=out[2])
        return TextCond(embeds=out[0])

    # ---- diffusion (used every step) ----
    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator)

    def add_noise(self, x0, eps, t):
        return add_noise(x0, eps, t, self.alphas_cumprod)

    def target(self, x0, eps, t):
        return self.param.target(x0, eps, t, self.alphas_cumprod)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        """x_t [B, C, h, w], t [B], cond with B entries -> the UNet's prediction [B, C, h, w]."""
        dtype = self.dtype
        kwargs = {}
        if self.architecture == "sdxl":
            size = self.resolution
            time_ids = torch.tensor([size, size, 0, 0, size, size], device=x_t.device, dtype=dtype)
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled.to(dtype),
                                           "time_ids": time_ids.expand(x_t.shape[0], -1)}
        return self.unet(x_t.to(dtype), t.to(x_t.device), encoder_hidden_states=cond.embeds.to(dtype),
                         return_dict=False, **kwargs)[0]


def _alphas_cumprod(scheduler) -> torch.Tensor:
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"scheduler {type(scheduler).__name__} has no alphas_cumprod; the UNet backbone "
                         "needs a DDPM-family scheduler (DDIM, DDPM, Euler, PNDM ...)")
    return scheduler.alphas_cumprod.float()
