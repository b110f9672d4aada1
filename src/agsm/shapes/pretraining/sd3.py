"""The tiny SD3-architecture model: MM-DiT + two CLIP encoders from scratch by flow matching on the frozen
sd15-tiny VAE's latents (sd3_data.py), saved as a stock StableDiffusion3Pipeline without T5 with train_info.json.

Flow matching: x_t = (1 - s) x0 + s eps, s = t / 1000, target eps - x0, s logit-normal; 10% empty captions; the
text conditioning exactly as the stock pipeline builds it (penultimate CLIP states side by side + 256 zero tokens
for the absent T5; the zero tokens travel as one, see sd3_conditioning.py, checked against the stock context
before training). GPU options: device, bf16 autocast (weights and optimiser stay fp32), torch.compile.
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import tiny_models as tm
from ..sd3_conditioning import T5_TOKENS, check_collapse, collapsed_zero_tokens, encode_ids
from . import frozen_vae_run, loop
from .common import stage_rng
from .config import SD3Config, settings

log = logging.getLogger(__name__)

STAGE = 4  # the random stream of this architecture (sd15 uses 1-3)


def draw_batch(cfg: SD3Config, step: int, data: dict) -> dict:
    """Everything random about step `step`, from one generator seeded by (seed, 4, step), on the data's device:
    indices, latent sample, noise, logit-normal s, caption drop, in that order."""
    device = data["mean"].device
    g = stage_rng(cfg.seed, STAGE, step, device)
    idx = torch.randint(len(data["mean"]), (cfg.batch,), generator=g, device=device)
    mean, std = data["mean"][idx], data["std"][idx]
    z = mean + std * torch.randn(mean.shape, generator=g, device=device)
    x0 = (z - data["shift"]) * data["scale"]  # what the pipeline's decode inverts: z = x0 / scale + shift
    eps = torch.randn(x0.shape, generator=g, device=device)
    s = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(cfg.batch, generator=g, device=device))
    drop = (torch.rand(cfg.batch, generator=g, device=device) < cfg.caption_dropout)[:, None]
    ids = [torch.where(drop, empty, all_ids[idx]) for all_ids, empty in zip(data["ids"], data["empty_ids"])]
    xt = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
    return {"xt": xt, "timestep": s * 1000, "target": eps - x0, "ids": ids}


class SD3Recipe(loop.Recipe):
    """The transformer and both text encoders trained jointly, EMA weights exported."""

    name = "sd3"

    def __init__(self, cfg: SD3Config, data: dict, tokenizer):
        self.cfg, self.data, self.tokenizer = cfg, data, tokenizer
        self.steps, self.lr, self.weight_decay, self.ema_decay = cfg.steps, cfg.lr, cfg.weight_decay, cfg.ema_decay
        self.warmup = min(cfg.warmup, cfg.steps // 10)  # short runs still reach the peak rate
        self.device, self.checkpoint_every, self.log_every = cfg.device, cfg.checkpoint_every, cfg.log_every
        self.forward = self._predict

    def build(self) -> dict[str, torch.nn.Module]:
        """Transformer, text_encoder, text_encoder_2, in that order under torch.manual_seed(seed)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # weight initialisation
        self.online = {
            "transformer": tm.build_sd3_transformer(cfg.text_hidden, cfg.width, cfg.layers, cfg.heads,
                                                    cfg.dual_attention_layers),
            "text_encoder": tm.build_sd3_text_encoder(self.tokenizer, cfg.text_hidden, cfg.text_layers),
            "text_encoder_2": tm.build_sd3_text_encoder(self.tokenizer, cfg.text_hidden, cfg.text_layers),
        }
        return self.online

    def settings(self) -> dict:
        """All options but where and how often to write and how fast to run."""
        return settings(self.cfg)

    def batch(self, step: int) -> dict:
        """draw_batch for this step."""
        return draw_batch(self.cfg, step, self.data)

    def _predict(self, ids, ids_2, xt, timestep):  # text encoders + transformer: one graph under --compile
        transformer = self.online["transformer"]
        context, pooled = encode_ids(self.online["text_encoder"], self.online["text_encoder_2"], ids, ids_2,
                                     transformer.config.joint_attention_dim, t5_tokens=1)
        return transformer(xt, context, pooled, timestep).sample

    def loss(self, batch: dict) -> torch.Tensor:
        """MSE between the predicted velocity (bf16 autocast if asked) and eps - x0, in fp32."""
        autocast = torch.autocast(torch.device(self.cfg.device).type, dtype=torch.bfloat16) if self.cfg.bf16 \
            else nullcontext()
        with autocast:
            pred = self.forward(*batch["ids"], batch["xt"], batch["timestep"])
        return F.mse_loss(pred.float(), batch["target"])

    @contextmanager
    def context(self):
        """Check that one collapsed zero token acts as the stock 256 (on the resumed weights), then train with it."""
        transformer = self.online["transformer"]
        ids = self.batch(0)["ids"]
        diff = check_collapse(transformer, *encode_ids(self.online["text_encoder"], self.online["text_encoder_2"],
                                                       ids[0][:2], ids[1][:2], transformer.config.joint_attention_dim,
                                                       1))
        log.info("one collapsed zero token acts as the stock %d (relative difference %.1e)", T5_TOKENS, diff)
        if self.cfg.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # for what autocast leaves in fp32; after the exact check
        self.forward = torch.compile(self._predict) if self.cfg.compile else self._predict
        with collapsed_zero_tokens(transformer):
            yield


def export(cfg: SD3Config, parts: dict, vae, tokenizer, data: dict, walls: dict, losses: list, command: str) -> Path:
    """Save the EMA `parts` (fp32 on the CPU) with the frozen VAE as a StableDiffusion3Pipeline in cfg.out_dir, with
    train_info.json (frozen_vae_run.save_pipeline). Returns the folder."""
    from diffusers import StableDiffusion3Pipeline

    parts = {k: m.to("cpu") for k, m in parts.items()}  # fp32 always: autocast never casts the weights
    pipe = StableDiffusion3Pipeline(
        transformer=parts["transformer"], scheduler=tm.build_flow_scheduler(), vae=vae.to("cpu"),
        text_encoder=parts["text_encoder"], tokenizer=tokenizer, text_encoder_2=parts["text_encoder_2"],
        tokenizer_2=copy.deepcopy(tokenizer), text_encoder_3=None, tokenizer_3=None)
    described = {
        "conditioning": {"clip_tokens": tokenizer.model_max_length, "t5_zero_tokens": T5_TOKENS,
                         "joint_attention_dim": parts["transformer"].config.joint_attention_dim},
        "flow": "x_t = (1 - s) x0 + s eps, s = t / 1000, target eps - x0, s ~ logit-normal"
                f"({cfg.logit_mean}, {cfg.logit_std})",
        "latent_scaling_factor": data["scale"], "latent_shift_factor": data["shift"],
    }
    return frozen_vae_run.save_pipeline(pipe, cfg, parts, vae, walls, losses, command, described)


def pretrain(out_dir: str, steps: int, seed: int = 0, work_dir: str | None = None, command: str | None = None,
             **options) -> Path:
    """Train (or resume) and write the pipeline to `out_dir`; returns it. `options`: SD3Config fields."""
    return frozen_vae_run.pretrain(SD3Config, lambda cfg, data, tokenizer, vae: SD3Recipe(cfg, data, tokenizer),
                                   export, out_dir, steps, seed, work_dir, command, options)
