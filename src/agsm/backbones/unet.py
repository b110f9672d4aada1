"""Backbone adapter for UNet2DConditionModel pipelines: SD1.5 (epsilon or v) and SDXL.

It wraps a stock diffusers pipeline and exposes only what the objectives and the data cache need:
encode images and captions, sample timesteps, noise, the regression target, and one prediction.
Text encoding goes through the pipeline's own `encode_prompt`, so it matches inference exactly.
"""
from __future__ import annotations

import torch

from .base import TextCond
from .parameterization import add_noise, parameterization_for
from .base import PipelineBackbone


def unet_architecture(unet) -> str:
    """'sdxl' when the UNet takes pooled text and time ids, else 'sd15' (the SD1.x/2.x layout)."""
    return "sdxl" if unet.config.get("addition_embed_type") == "text_time" else "sd15"


class UNetBackbone(PipelineBackbone):
    family = "unet"
    denoiser_name = "unet"

    def __init__(self, pipe, resolution: int | None = None):
        self.pipe = pipe
        self.unet = pipe.unet
        self.architecture = unet_architecture(self.unet)
        self.token_width = self.unet.config.cross_attention_dim
        self.num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        self.alphas_cumprod = _alphas_cumprod(pipe.scheduler)
        self.param = parameterization_for(pipe.scheduler.config.prediction_type)
        self.resolution = resolution or self.unet.config.sample_size * pipe.vae_scale_factor
        self._freeze()

    # ---- encoders (used once, by the data cache) ----
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

    def velocity_factor(self, t: torch.Tensor) -> torch.Tensor:
        """[B]: the squared error of a prediction in v-space over that in this model's target space, at t."""
        return self.param.velocity_factor(t, self.alphas_cumprod).float()

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        """x_t [B, C, h, w], t [B], cond with B entries -> the UNet's prediction [B, C, h, w]."""
        dtype = self.dtype
        kwargs = {}
        if self.architecture == "sdxl":
            size = self.resolution
            # built on the host and copied without waiting (a blocking copy would sync every call)
            time_ids = torch.tensor([size, size, 0, 0, size, size], dtype=dtype).to(x_t.device, non_blocking=True)
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled.to(dtype),
                                           "time_ids": time_ids.expand(x_t.shape[0], -1)}
        return self.unet(x_t.to(dtype), t.to(x_t.device), encoder_hidden_states=cond.embeds.to(dtype),
                         return_dict=False, **kwargs)[0]


def _alphas_cumprod(scheduler) -> torch.Tensor:
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ValueError(f"scheduler {type(scheduler).__name__} has no alphas_cumprod; the UNet backbone "
                         "needs a DDPM-family scheduler (DDIM, DDPM, Euler, PNDM ...)")
    return scheduler.alphas_cumprod.float()
