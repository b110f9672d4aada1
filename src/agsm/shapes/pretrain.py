"""Pretrain the tiny SD1.5-architecture ShapesWorld model on the CPU, resumably, and save it as a stock
StableDiffusionPipeline (diffusers layout, loadable offline with `StableDiffusionPipeline.from_pretrained`).

    python -m agsm.shapes.pretrain --out src/agsm/shapes/models/sd15-tiny --work runs/pretrain-sd15 \
        --steps-vae 3000 --steps-unet 10000 --seed 0

Stages (each resumable from atomic checkpoints in --work; rerun the same command after a kill):
  1. VAE: 64x64x3 -> 8x8x4, foreground-weighted L1 + small KL;
  2. cache: posterior mean and std of every training image, and the latent scaling factor;
  3. UNet + CLIP text encoder from scratch, epsilon loss on SD's noise schedule, 10% empty captions
     (for classifier-free guidance), EMA weights exported;
  4. export: pipeline folder + train_info.json (command, seed, steps, wall time, sizes).
Every batch, noise and timestep is drawn from a generator seeded by (seed, stage, step), so a
resumed run gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import training_samples
from .render import render
from .tiny_models import build_scheduler, build_text_encoder, build_tokenizer, build_unet, build_vae


@dataclass
class PretrainConfig:
    out_dir: str
    work_dir: str
    steps_vae: int = 3000
    steps_unet: int = 10000
    seed: int = 0
    n_images: int = 20000
    batch_vae: int = 16
    batch_unet: int = 64
    lr_vae: float = 1e-3
    lr_unet: float = 8e-4
    warmup_unet: int = 200
    kl_weight: float = 1e-6  # per-sample summed KL, as Stable Diffusion's VAE
    foreground_weight: float = 4.0  # objects cover ~10% of a canvas; without this L1 fits the white first
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    unet_channels: tuple[int, ...] = (32, 64)
    text_hidden: int = 64
    text_layers: int = 2
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("steps_vae", "steps_unet", "n_images", "batch_vae", "batch_unet", "checkpoint_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _save_atomic(obj, path: Path) -> None:
    """A kill mid-write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng(seed: int, stage: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 100_003 + step)


def _cosine_lr(step: int, total: int, peak: float, warmup: int = 0, floor: float = 0.1) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _images(cfg: PretrainConfig) -> tuple[torch.Tensor, list[str]]:
    samples = training_samples(cfg.n_images, cfg.seed)
    pixels = np.stack([np.asarray(render(s.scene)) for s in samples])  # [N, 64, 64, 3] uint8
    return torch.from_numpy(pixels), [s.prompt for s in samples]


def _to_model(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, 3, 64, 64] in [-1, 1]


def train_vae(cfg: PretrainConfig, pixels: torch.Tensor, work: Path):
    ckpt_path = work / "vae.pt"
    vae = build_vae(cfg.vae_channels)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr_vae)
    step, wall = 0, 0.0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        vae.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step, wall = ckpt["step"], ckpt["wall"]
        _log(f"vae: resumed at step {step}")
    vae.train()
    t0 = time.time()
    while step < cfg.steps_vae:
        g = _rng(cfg.seed, 1, step)
        x = _to_model(pixels[torch.randint(len(pixels), (cfg.batch_vae,), generator=g)])
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, cfg.steps_vae, cfg.lr_vae)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        foreground = ((x - 1.0).abs().amax(1, keepdim=True) > 0.1).float()  # [B, 1, 64, 64]
        l1 = ((recon - x).abs() * (1 + cfg.foreground_weight * foreground)).mean()
        loss = l1 + cfg.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % cfg.checkpoint_every == 0 or step == cfg.steps_vae:
            elapsed = wall + time.time() - t0
            _save_atomic({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step, "wall": elapsed}, ckpt_path)
            _log(f"vae step {step}/{cfg.steps_vae} l1 {l1.item():.4f} loss {loss.item():.4f} "
                 f"{elapsed / max(1, step):.2f} s/step (incl. resumes) wall {elapsed / 60:.1f} min")
    return vae.eval(), wall + time.time() - t0


@torch.no_grad()
def cache_latents(cfg: PretrainConfig, vae, pixels: torch.Tensor, work: Path) -> dict:
    path = work / "latents.pt"
    if path.exists():
        cache = torch.load(path, weights_only=False)
        if cache["vae_steps"] == cfg.steps_vae:  # else the VAE trained on since: encode again
            return cache
    t0 = time.time()
    means, stds = [], []
    for i in range(0, len(pixels), 256):
        posterior = vae.encode(_to_model(pixels[i : i + 256])).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    mean, std = torch.cat(means), torch.cat(stds)  # [N, 4, 8, 8]
    sample = mean + std * torch.randn(mean.shape, generator=_rng(cfg.seed, 2, 0))
    cache = {"mean": mean, "std": std, "scaling_factor": float(1.0 / sample.std()), "wall": time.time() - t0,
             "vae_steps": cfg.steps_vae}
    _save_atomic(cache, path)
    _log(f"cached {len(mean)} latents, scaling factor {cache['scaling_factor']:.4f}, {cache['wall']:.0f} s")
    return cache


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def _tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids exactly as StableDiffusionPipeline makes them: padded to the maximum length."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def train_unet(cfg: PretrainConfig, cache: dict, captions: list[str], work: Path):
    ckpt_path = work / "unet.pt"
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(tokenizer, cfg.text_hidden, cfg.text_layers)
    unet = build_unet(cfg.text_hidden, cfg.unet_channels)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr_unet, weight_decay=0.01)
    step, wall = 0, 0.0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        for module, key in ((unet, "unet"), (text_encoder, "text"), (ema_unet, "ema_unet"), (ema_text, "ema_text")):
            module.load_state_dict(ckpt[key])
        opt.load_state_dict(ckpt["opt"])
        step, wall = ckpt["step"], ckpt["wall"]
        _log(f"unet: resumed at step {step}")
    scheduler = build_scheduler()
    ids, empty_ids = _tokenize(tokenizer, captions), _tokenize(tokenizer, [""])  # [N, L], [1, L]
    sf = cache["scaling_factor"]
    unet.train()
    text_encoder.train()
    t0 = time.time()
    while step < cfg.steps_unet:
        g = _rng(cfg.seed, 3, step)
        idx = torch.randint(len(ids), (cfg.batch_unet,), generator=g)
        z0 = (cache["mean"][idx] + cache["std"][idx] * torch.randn(cache["mean"][idx].shape, generator=g)) * sf
        drop = torch.rand(cfg.batch_unet, generator=g) < cfg.caption_dropout
        batch_ids = torch.where(drop[:, None], empty_ids, ids[idx])
        noise = torch.randn(z0.shape, generator=g)
        t = torch.randint(scheduler.config.num_train_timesteps, (cfg.batch_unet,), generator=g)
        zt = scheduler.add_noise(z0, noise, t)
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, cfg.steps_unet, cfg.lr_unet, cfg.warmup_unet)
        pred = unet(zt, t, text_encoder(batch_ids).last_hidden_state).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # short memory early, when weights move fast
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        step += 1
        if step % cfg.checkpoint_every == 0 or step == cfg.steps_unet:
            elapsed = wall + time.time() - t0
            state = {"unet": unet.state_dict(), "text": text_encoder.state_dict(), "ema_unet": ema_unet.state_dict(),
                     "ema_text": ema_text.state_dict(), "opt": opt.state_dict(), "step": step, "wall": elapsed}
            _save_atomic(state, ckpt_path)
            _log(f"unet step {step}/{cfg.steps_unet} loss {loss.item():.4f} "
                 f"{elapsed / max(1, step):.2f} s/step wall {elapsed / 60:.1f} min")
    return ema_unet, ema_text, tokenizer, wall + time.time() - t0


def export(cfg: PretrainConfig, vae, unet, text_encoder, tokenizer, cache: dict, walls: dict, command: str) -> Path:
    from diffusers import StableDiffusionPipeline

    vae.register_to_config(scaling_factor=cache["scaling_factor"])
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=build_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    out = Path(cfg.out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    import diffusers, transformers

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
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__},
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def pretrain(out_dir: str, steps_vae: int, steps_unet: int, seed: int, work_dir: str | None = None,
             command: str | None = None, **options) -> Path:
    """Train (or resume) all stages and write the pipeline to `out_dir`; returns it."""
    work_dir = work_dir or Path("runs") / f"pretrain-{Path(out_dir).name}"  # never inside the shipped folder
    cfg = PretrainConfig(out_dir=str(out_dir), work_dir=str(work_dir),
                         steps_vae=steps_vae, steps_unet=steps_unet, seed=seed, **options)
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    torch.manual_seed(cfg.seed)  # weight initialisation
    t0 = time.time()
    pixels, captions = _images(cfg)
    _log(f"rendered {len(pixels)} training images in {time.time() - t0:.0f} s")
    vae, wall_vae = train_vae(cfg, pixels, work)
    cache = cache_latents(cfg, vae, pixels, work)
    torch.manual_seed(cfg.seed + 1)
    unet, text_encoder, tokenizer, wall_unet = train_unet(cfg, cache, captions, work)
    walls = {"vae": wall_vae, "cache": cache["wall"], "unet": wall_unet}
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    out = export(cfg, vae, unet, text_encoder, tokenizer, cache, walls, command)
    _log(f"saved {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="pipeline folder to write")
    parser.add_argument("--work", default=None, help="checkpoint folder (default: runs/pretrain-NAME)")
    parser.add_argument("--steps-vae", type=int, default=PretrainConfig.steps_vae)
    parser.add_argument("--steps-unet", type=int, default=PretrainConfig.steps_unet)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-images", type=int, default=PretrainConfig.n_images)
    parser.add_argument("--checkpoint-every", type=int, default=PretrainConfig.checkpoint_every)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    command = "python -m agsm.shapes.pretrain " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    pretrain(args.out, args.steps_vae, args.steps_unet, args.seed, work_dir=args.work, command=command,
             n_images=args.n_images, checkpoint_every=args.checkpoint_every, threads=args.threads)


if __name__ == "__main__":
    main()
