"""Backbone adapter for SD3Transformer2DModel pipelines (SD3, SD3.5): flow matching with v-prediction.

docs/method.md: x_t = (1 - s) x0 + s eps with s = t / 1000, target y = eps - x0. Timesteps are continuous in
[0, 1000): uniform as in the public code, or logit-normal, with SD3's shift as an option. Text goes through
the pipeline's own `encode_prompt` (two CLIP encoders, T5 when the pipeline has one), pooled projections too.
Without T5, the 256 zero tokens travel as one (t5_free.py: the same predictions, far fewer context tokens).
"""
from __future__ import annotations

import torch

from .base import TextCond
from .parameterization import flow_add_noise, flow_target, sample_flow_timesteps
from .base import PipelineBackbone
from .t5_free import install_collapse, is_t5_free


class MMDiTBackbone(PipelineBackbone):
    family = "mmdit"
    architecture = "sd3"
    denoiser_name = "transformer"

    def __init__(self, pipe, resolution: int | None = None, timestep_sampling: str = "uniform",
                 timestep_shift: float = 1.0, logit_mean: float = 0.0, logit_std: float = 1.0):
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.token_width = self.transformer.config.caption_projection_dim
        self.num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        self.resolution = resolution or self.transformer.config.sample_size * pipe.vae_scale_factor
        self.timesteps = {"sampling": timestep_sampling, "shift": timestep_shift, "logit_mean": logit_mean,
                          "logit_std": logit_std}
        sample_flow_timesteps(1, torch.Generator(), 1, **self.timesteps)  # check the options now, not mid-run
        # Installed for the backbone's life (gradient checkpointing recomputes blocks during backward); the hooks
        # leave full-length stock contexts alone.
        self.collapse_zero_tokens = is_t5_free(pipe)
        if self.collapse_zero_tokens:
            install_collapse(self.transformer, pipe.tokenizer_max_length)
        self._freeze()

    def fingerprint(self) -> str:
        return super().fingerprint() + ("-t5free1" if self.collapse_zero_tokens else "")

    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> TextCond:
        captions = list(captions)
        extra = {"max_sequence_length": 1} if self.collapse_zero_tokens else {}
        embeds, _, pooled, _ = self.pipe.encode_prompt(captions, captions, captions, device=self.device,
                                                       num_images_per_prompt=1, do_classifier_free_guidance=False,
                                                       **extra)
        return TextCond(embeds=embeds, pooled=pooled)

    def context_width_tokens(self, embeds: torch.Tensor) -> torch.Tensor:
        """Text-encoder outputs -> the context stream's width, where MM-DiT tokens live (for copy-initialisation)."""
        return self.transformer.context_embedder(embeds.to(self.device, self.dtype))

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return sample_flow_timesteps(n, generator, self.num_train_timesteps, **self.timesteps)

    def add_noise(self, x0, eps, t):
        return flow_add_noise(x0, eps, t, self.num_train_timesteps)

    def target(self, x0, eps, t):
        return flow_target(x0, eps)

    def velocity_factor(self, t: torch.Tensor) -> torch.Tensor:
        """[B] ones: the flow target eps - x0 already is the velocity."""
        return torch.ones(t.shape, device=t.device)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        """x_t [B, C, h, w], t [B] in [0, 1000], cond with B entries -> the velocity [B, C, h, w]."""
        dtype = self.dtype
        return self.transformer(hidden_states=x_t.to(dtype), timestep=t.to(x_t.device, torch.float32),
                                encoder_hidden_states=cond.embeds.to(dtype), pooled_projections=cond.pooled.to(dtype),
                                return_dict=False)[0]
