"""The tiny SDXL-architecture model: a UNet with SDXL's added conditioning (pooled text + time ids) and two CLIP
encoders, trained from scratch with the epsilon loss on the frozen sd15-tiny VAE's latents (the data of sd3_data.py),
saved as a stock StableDiffusionXLPipeline with train_info.json.

The recipe is sd15-tiny's (the one the ShapesWorld study kept): 10% empty captions, SD's noise schedule, AdamW with
warmup + cosine, EMA weights exported. The text conditioning is the stock pipeline's: both encoders' penultimate
hidden states side by side, the second encoder's projected end-of-text state as pooled text, time ids
(64, 64, 0, 0, 64, 64); `check_stock_conditioning` compares it with the pipeline's own encode_prompt before training.
The pipeline is saved with force_zeros_for_empty_prompt=False: its unconditional branch encodes the empty prompt,
which is what the 10% caption dropout trains (SDXL's own default zeroes the embeddings instead).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import tiny_models as tm
from . import frozen_vae_run, loop
from .common import stage_rng
from .config import SDXLConfig, settings

log = logging.getLogger(__name__)

STAGE = 5  # the random stream of this architecture (sd15 uses 1-3, sd3 4)


def time_ids(size: int, batch: int, device) -> torch.Tensor:
    """SDXL's micro-conditioning as its pipeline builds it for a size x size image: original size, crop corner
    (0, 0), target size. [batch, 6]"""
    return torch.tensor([size, size, 0, 0, size, size], dtype=torch.float32, device=device).expand(batch, -1)


def encode(text_encoder, text_encoder_2, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Context [B, L, w1 + w2] and pooled text [B, w2] as StableDiffusionXLPipeline.encode_prompt makes them (both
    tokenizers are one, so one id tensor serves both encoders)."""
    first = text_encoder(ids, output_hidden_states=True)
    second = text_encoder_2(ids, output_hidden_states=True)
    context = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    return context, second.text_embeds


def stock_pipeline(unet, text_encoder, text_encoder_2, tokenizer, vae):
    """The parts as a StableDiffusionXLPipeline (no copies of the weights)."""
    import copy

    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=copy.deepcopy(tokenizer), unet=unet,
                                     scheduler=tm.build_scheduler(), force_zeros_for_empty_prompt=False,
                                     add_watermarker=False)


@torch.no_grad()
def check_stock_conditioning(pipe, captions: list[str]) -> float:
    """The largest relative difference between `encode` and the pipeline's encode_prompt on `captions`; raises if
    the training conditioning is not the one sampling will see."""
    from .common import tokenize

    ids = tokenize(pipe.tokenizer, captions).to(pipe.unet.device)
    context, pooled = encode(pipe.text_encoder, pipe.text_encoder_2, ids)
    stock = pipe.encode_prompt(captions, device=pipe.unet.device, num_images_per_prompt=1,
                               do_classifier_free_guidance=False)
    worst = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in
                ((context, stock[0]), (pooled, stock[2])))
    if worst > 1e-5:
        raise RuntimeError(f"the training conditioning differs from the stock pipeline's by {worst:.1e} (relative)")
    return worst


class SDXLRecipe(loop.Recipe):
    """The UNet and both text encoders trained jointly, EMA weights exported."""

    name = "sdxl"

    def __init__(self, cfg: SDXLConfig, data: dict, tokenizer, vae):
        self.cfg, self.data, self.tokenizer, self.vae = cfg, data, tokenizer, vae
        self.steps, self.lr, self.warmup, self.weight_decay = cfg.steps, cfg.lr, cfg.warmup, cfg.weight_decay
        self.ema_decay, self.device = cfg.ema_decay, cfg.device
        self.checkpoint_every, self.log_every = cfg.checkpoint_every, cfg.log_every
        self.scheduler = tm.build_scheduler()
        self.size = vae.config.sample_size  # 64: the image side the time ids name

    def build(self) -> dict[str, torch.nn.Module]:
        """UNet, text_encoder, text_encoder_2, in that order under torch.manual_seed(seed + 1)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed + 1)  # weight initialisation
        text, text_2 = tm.build_sdxl_text_encoders(self.tokenizer, cfg.text_hidden, cfg.text_layers)
        self.online = {"unet": tm.build_sdxl_unet(cfg.text_hidden, cfg.unet_channels), "text_encoder": text,
                       "text_encoder_2": text_2}
        return self.online

    def settings(self) -> dict:
        """All options but where and how often to write and how fast to run."""
        return settings(self.cfg)

    def batch(self, step: int) -> dict:
        """In this order: indices, latent sample, caption drop, noise, timesteps, from the generator of
        (seed, 5, step) on the data's device."""
        cfg, data = self.cfg, self.data
        device = data["mean"].device
        g = stage_rng(cfg.seed, STAGE, step, device)
        idx = torch.randint(len(data["mean"]), (cfg.batch,), generator=g, device=device)
        mean, std = data["mean"][idx], data["std"][idx]
        x0 = (mean + std * torch.randn(mean.shape, generator=g, device=device) - data["shift"]) * data["scale"]
        drop = (torch.rand(cfg.batch, generator=g, device=device) < cfg.caption_dropout)[:, None]
        ids = torch.where(drop, data["empty_ids"][0], data["ids"][0][idx])
        noise = torch.randn(x0.shape, generator=g, device=device)
        t = torch.randint(self.scheduler.config.num_train_timesteps, (cfg.batch,), generator=g, device=device)
        return {"zt": self.scheduler.add_noise(x0, noise, t), "t": t, "ids": ids, "noise": noise}

    def loss(self, batch: dict) -> torch.Tensor:
        """MSE between the predicted and the drawn noise."""
        online = self.online
        context, pooled = encode(online["text_encoder"], online["text_encoder_2"], batch["ids"])
        added = {"text_embeds": pooled, "time_ids": time_ids(self.size, len(pooled), pooled.device)}
        pred = online["unet"](batch["zt"], batch["t"], context, added_cond_kwargs=added).sample
        return F.mse_loss(pred, batch["noise"])

    @contextmanager
    def context(self):
        """Check (on the resumed weights) that training conditions the UNet as the stock pipeline will."""
        online = self.online
        pipe = stock_pipeline(online["unet"], online["text_encoder"], online["text_encoder_2"], self.tokenizer,
                              self.vae)
        diff = check_stock_conditioning(pipe, ["a red circle", "two blue squares"])
        log.info("training conditioning equals the stock pipeline's encode_prompt (relative difference %.1e)", diff)
        yield


def export(cfg: SDXLConfig, parts: dict, vae, tokenizer, data: dict, walls: dict, losses: list, command: str) -> Path:
    """Save the EMA `parts` with the frozen VAE as a StableDiffusionXLPipeline in cfg.out_dir, with
    train_info.json (frozen_vae_run.save_pipeline). Returns the folder."""
    parts = {k: m.to("cpu").eval() for k, m in parts.items()}
    pipe = stock_pipeline(parts["unet"], parts["text_encoder"], parts["text_encoder_2"], tokenizer, vae.to("cpu"))
    described = {
        "conditioning": {"context": "penultimate hidden states of text_encoder and text_encoder_2 side by side",
                         "pooled": "text_encoder_2's projected end-of-text state", "time_ids": [64, 64, 0, 0, 64, 64],
                         "unconditional": "the empty prompt (force_zeros_for_empty_prompt=False)"},
        "latent_scaling_factor": data["scale"],
    }
    return frozen_vae_run.save_pipeline(pipe, cfg, parts, vae, walls, losses, command, described)


def pretrain(out_dir: str, steps: int, seed: int = 0, work_dir: str | None = None, command: str | None = None,
             **options) -> Path:
    """Train (or resume) and write the pipeline to `out_dir`; returns it. `options`: SDXLConfig fields."""
    return frozen_vae_run.pretrain(SDXLConfig, SDXLRecipe, export, out_dir, steps, seed, work_dir, command, options)
