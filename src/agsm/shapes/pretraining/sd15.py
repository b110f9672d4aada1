"""The tiny SD1.5-architecture model: render the training set, train the VAE (sd15_vae.py), cache latents, train
the UNet + CLIP text encoder (epsilon loss on SD's noise schedule, 10% empty captions, EMA weights exported), and
save a stock StableDiffusionPipeline with train_info.json.

`init_from` continues from a trained pipeline instead (its VAE and latent scale kept, the VAE stage skipped; the
UNet and text encoder trained on), e.g. with a new caption mix: `position_repeats` shows position scenes that many
times as often, `restate_share` shows a scene with another true caption (restate.py) with that probability.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dataset import training_samples
from ..render import render
from ..restate import restatement
from ..spec import CATEGORIES
from ..tiny_models import build_scheduler, build_text_encoder, build_tokenizer, build_unet
from . import loop
from .common import command_line, default_work_dir, library_versions, stage_rng, tokenize
from .config import SD15Config, settings
from .sd15_vae import VAERecipe, cache_latents

log = logging.getLogger(__name__)


def images(cfg: SD15Config) -> tuple[torch.Tensor, list[str], list[str | None]]:
    """Pixels [N, 64, 64, 3] uint8, captions, and each caption's restatement (None where none applies or none is
    asked for). Categories are taken in turn, position `position_repeats` times per cycle."""
    categories = CATEGORIES + ("position",) * (cfg.position_repeats - 1)
    samples = training_samples(cfg.n_images, cfg.seed, categories)
    pixels = np.stack([np.asarray(render(s.scene)) for s in samples])
    rng = random.Random(cfg.seed)
    restated = [restatement(s.prompt, rng) if cfg.restate_share > 0 else None for s in samples]
    return torch.from_numpy(pixels), [s.prompt for s in samples], restated


class UNetRecipe(loop.Recipe):
    """Stage 3 (stream 3): UNet + text encoder, epsilon prediction on the cached latents."""

    name = "unet"

    def __init__(self, cfg: SD15Config, cache: dict, captions: list[str], restated: list[str | None]):
        self.cfg, self.cache = cfg, cache
        self.steps, self.lr, self.warmup, self.ema_decay = cfg.steps_unet, cfg.lr_unet, cfg.warmup_unet, cfg.ema_decay
        self.checkpoint_every, self.log_every = cfg.checkpoint_every, cfg.log_every
        self.tokenizer, self.scheduler = build_tokenizer(), build_scheduler()
        self.ids, self.empty_ids = tokenize(self.tokenizer, captions), tokenize(self.tokenizer, [""])  # [N, L], [1, L]
        self.restated_ids = tokenize(self.tokenizer, [r or c for r, c in zip(restated, captions)])  # [N, L]
        self.has_restatement = torch.tensor([r is not None for r in restated])  # [N]

    def build(self) -> dict[str, torch.nn.Module]:
        """The text encoder, then the UNet, under torch.manual_seed(seed + 1); or both from `init_from`."""
        torch.manual_seed(self.cfg.seed + 1)  # weight initialisation
        if self.cfg.init_from:
            from diffusers import UNet2DConditionModel
            from transformers import CLIPTextModel

            self.unet = UNet2DConditionModel.from_pretrained(self.cfg.init_from, subfolder="unet")
            self.text = CLIPTextModel.from_pretrained(self.cfg.init_from, subfolder="text_encoder")
        else:
            self.text = build_text_encoder(self.tokenizer, self.cfg.text_hidden, self.cfg.text_layers)
            self.unet = build_unet(self.cfg.text_hidden, self.cfg.unet_channels)
        return {"unet": self.unet, "text": self.text}

    def settings(self) -> dict:
        """All weight-changing options (the VAE's too: they change the latents)."""
        return settings(self.cfg)

    def batch(self, step: int) -> dict:
        """In this order: indices, latent sample, caption drop, noise, timesteps, then (only when restate_share > 0,
        so runs without restatements keep their random stream) which scenes show their restatement."""
        cfg, cache = self.cfg, self.cache
        g = stage_rng(cfg.seed, 3, step)
        idx = torch.randint(len(self.ids), (cfg.batch_unet,), generator=g)
        mean, std = cache["mean"][idx], cache["std"][idx]
        z0 = (mean + std * torch.randn(mean.shape, generator=g)) * cache["scaling_factor"]
        drop = torch.rand(cfg.batch_unet, generator=g) < cfg.caption_dropout
        ids = torch.where(drop[:, None], self.empty_ids, self.ids[idx])
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(self.scheduler.config.num_train_timesteps, (cfg.batch_unet,), generator=g)
        if cfg.restate_share > 0:
            restate = self.has_restatement[idx] & (torch.rand(cfg.batch_unet, generator=g) < cfg.restate_share)
            ids = torch.where(restate[:, None] & ~drop[:, None], self.restated_ids[idx], ids)
        return {"zt": self.scheduler.add_noise(z0, noise, t), "t": t, "ids": ids, "noise": noise}

    def loss(self, batch: dict) -> torch.Tensor:
        """MSE between the predicted and the drawn noise."""
        pred = self.unet(batch["zt"], batch["t"], self.text(batch["ids"]).last_hidden_state).sample
        return F.mse_loss(pred, batch["noise"])


def export(cfg: SD15Config, vae, unet, text_encoder, tokenizer, cache: dict, walls: dict, losses: dict,
           command: str) -> Path:
    """Save the pipeline to cfg.out_dir (safetensors) with train_info.json; returns the folder."""
    from diffusers import StableDiffusionPipeline

    vae.register_to_config(scaling_factor=cache["scaling_factor"])
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=build_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    out = Path(cfg.out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    info = {
        "command": command,
        "seed": cfg.seed,
        "steps_vae": cfg.steps_vae,
        "steps_unet": cfg.steps_unet,
        "wall_seconds": {k: round(v, 1) for k, v in walls.items()} | {"total": round(sum(walls.values()), 1)},
        "config": asdict(cfg),
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in
                       (("vae", vae), ("unet", unet), ("text_encoder", text_encoder))},
        "latent_scaling_factor": cache["scaling_factor"],
        "machine": f"{platform.machine()} CPU, torch threads {cfg.threads}, {os.cpu_count()} cores",
        "versions": library_versions(),
        "loss_curve": losses,
    }
    if cfg.init_from:  # the whole history: this run's cost adds to the one it continued
        earlier = Path(cfg.init_from) / "train_info.json"
        info["continued_from"] = json.loads(earlier.read_text()) if earlier.exists() else cfg.init_from
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def pretrain(out_dir: str, steps_vae: int, steps_unet: int, seed: int, work_dir: str | None = None,
             command: str | None = None, **options) -> Path:
    """Train (or resume) all stages and write the pipeline to `out_dir`; returns it. `options`: SD15Config fields."""
    cfg = SD15Config(out_dir=str(out_dir), work_dir=default_work_dir(out_dir, work_dir), steps_vae=steps_vae,
                     steps_unet=steps_unet, seed=seed, **options)
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    pixels, captions, restated = images(cfg)
    log.info("rendered %d training images; %d captions have a restatement", len(pixels),
             sum(r is not None for r in restated))
    if cfg.init_from:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(cfg.init_from, subfolder="vae").eval()
        vae_stage = loop.Trained({"vae": vae}, None, 0.0, [])
    else:
        vae_stage = loop.train(VAERecipe(cfg, pixels), work)
        vae = vae_stage.result["vae"].eval()
    cache = cache_latents(cfg, vae, pixels, work)
    if cfg.init_from:  # the UNet learned at the pipeline's latent scale; keep it
        cache["scaling_factor"] = float(vae.config.scaling_factor)
    recipe = UNetRecipe(cfg, cache, captions, restated)
    unet_stage = loop.train(recipe, work)
    ema = {k: m.eval() for k, m in unet_stage.result.items()}
    walls = {"vae": vae_stage.wall, "cache": cache["wall"], "unet": unet_stage.wall}
    losses = {"vae": vae_stage.losses, "unet": unet_stage.losses}
    out = export(cfg, vae, ema["unet"], ema["text"], recipe.tokenizer, cache, walls, losses, command_line(command))
    log.info("saved %s", out)
    return out
