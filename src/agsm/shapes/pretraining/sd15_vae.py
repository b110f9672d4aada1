"""The tiny SD1.5 model's first two stages: the VAE (64x64x3 -> 8x8x4, foreground-weighted L1 + small KL) and
the cache of every training image's posterior mean and std with the latent scaling factor.

The VAE stage runs in the shared loop without EMA and without gradient clipping, as it always has; the loop's
warmup is 0 for it (cosine from the first step).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..tiny_models import build_vae
from . import checkpoint
from .common import stage_rng, to_model
from .config import SD15Config
from .loop import Recipe

log = logging.getLogger(__name__)


class VAERecipe(Recipe):
    """Stage 1 (stream 1): AutoencoderKL from scratch on the rendered training images."""

    name = "vae"
    clip = None
    ema_decay = None

    def __init__(self, cfg: SD15Config, pixels: torch.Tensor):
        self.cfg, self.pixels = cfg, pixels  # pixels: [N, 64, 64, 3] uint8
        self.steps, self.lr = cfg.steps_vae, cfg.lr_vae
        self.checkpoint_every, self.log_every = cfg.checkpoint_every, cfg.log_every

    def build(self) -> dict[str, torch.nn.Module]:
        """A fresh VAE under torch.manual_seed(seed)."""
        torch.manual_seed(self.cfg.seed)  # weight initialisation
        self.vae = build_vae(self.cfg.vae_channels)
        return {"vae": self.vae}

    def settings(self) -> dict:
        """The VAE options only: a longer UNet stage keeps the finished VAE."""
        return self.cfg.vae_settings()

    def batch(self, step: int) -> dict:
        """Images, then the posterior sample's noise (the encoder draws nothing, so the order is the one the
        stage always had: indices, then noise)."""
        g = stage_rng(self.cfg.seed, 1, step)
        x = to_model(self.pixels[torch.randint(len(self.pixels), (self.cfg.batch_vae,), generator=g)])
        config = self.vae.config
        side = config.sample_size // 2 ** (len(config.block_out_channels) - 1)
        noise = torch.randn((len(x), config.latent_channels, side, side), generator=g)
        return {"x": x, "noise": noise}

    def loss(self, batch: dict) -> torch.Tensor:
        """Foreground-weighted L1 of the reconstruction of a posterior sample, plus kl_weight x KL."""
        x = batch["x"]
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * batch["noise"]
        recon = self.vae.decode(z).sample
        foreground = ((x - 1.0).abs().amax(1, keepdim=True) > 0.1).float()  # [B, 1, 64, 64]
        l1 = ((recon - x).abs() * (1 + self.cfg.foreground_weight * foreground)).mean()
        return l1 + self.cfg.kl_weight * posterior.kl().mean()


def cache_key(cfg: SD15Config) -> dict:
    """What the cached latents depend on: the images and the VAE that encoded them."""
    vae = {"init_from": cfg.init_from} if cfg.init_from else cfg.vae_settings()
    return {"seed": cfg.seed, "n_images": cfg.n_images, "position_repeats": cfg.position_repeats, "vae": vae}


@torch.no_grad()
def cache_latents(cfg: SD15Config, vae, pixels: torch.Tensor, work: Path) -> dict:
    """Posterior mean and std [N, 4, 8, 8] of every image and the scaling factor (1 / std of one sample, drawn
    from stream 2), cached in WORK/latents.pt; encoded again when the images or the VAE changed."""
    path = work / "latents.pt"
    key = checkpoint.normalise(cache_key(cfg))
    if path.exists():
        cache = torch.load(path, weights_only=True)
        if cache.get("key") == key:
            return cache
    t0 = time.time()
    means, stds = [], []
    for i in range(0, len(pixels), 256):
        posterior = vae.encode(to_model(pixels[i : i + 256])).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)  # [N, 4, 8, 8]
    sample = mean + std * torch.randn(mean.shape, generator=stage_rng(cfg.seed, 2, 0))
    cache = {"mean": mean, "std": std, "scaling_factor": float(1.0 / sample.std()), "wall": time.time() - t0,
             "vae_steps": cfg.steps_vae, "key": key}
    checkpoint.save_atomic(cache, path)
    log.info("cached %d latents, scaling factor %.4f, %.0f s", len(mean), cache["scaling_factor"], cache["wall"])
    return cache
