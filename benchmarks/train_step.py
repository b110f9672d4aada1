"""Pairs per second and peak memory of one AGSM / SoftREPA training step, two ways.

    python benchmarks/train_step.py                      # tiny model + SD1.5 architecture, CPU
    python benchmarks/train_step.py --models tiny --steps 5
    python benchmarks/train_step.py --models sd15 --device cuda --latent 64 --precision bf16   # on a GPU
    python benchmarks/train_step.py --models sd3 --device cuda --latent 64 --precision bf16    # SD3 at 512 px

Modes:
- public: the public code's structure as we understand it: VAE and text encoders run on every step,
  fp32, and SoftREPA's diagonal term recomputes the positive pairs in a separate forward.
- ours: latents and text conditioning come from the encode-once cache, the diagonal term reuses the
  error matrix, optional bf16 autocast (`--precision bf16`).
Each (model, method, mode) runs in its own process so its peak memory (max RSS on the CPU, peak
allocated on CUDA) is its own. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

CAPTIONS = ["a red circle", "two blue squares", "a green triangle above a yellow circle", "three purple squares",
            "an orange circle", "a blue triangle", "four red squares", "a yellow square and a green circle"]


def build(model: str, device: str):
    from agsm.architectures import sd3_full_pipeline, sd15_full_pipeline, tiny_sd15_pipeline
    from agsm.backbones.mmdit import MMDiTBackbone
    from agsm.backbones.unet import UNetBackbone

    if model == "sd3":
        return MMDiTBackbone(sd3_full_pipeline().to(device))
    pipe = tiny_sd15_pipeline() if model == "tiny" else sd15_full_pipeline()
    return UNetBackbone(pipe.to(device))


def run_one(model: str, method: str, mode: str, steps: int, images: int, latent: int, precision: str,
            device: str) -> dict:
    from agsm.backbones.base import TextCond
    from agsm.config import MethodConfig
    from agsm.denoiser import TokenDenoiser, update_ema
    from agsm.objectives import STEPS, PairBatch
    from agsm.objectives.pairs import in_batch_captions, per_pair_mse
    from agsm.tokens import SoftTokens, install_tokens, placement_for

    torch.manual_seed(0)
    backbone = build(model, device)
    vae_factor = backbone.pipe.vae_scale_factor
    pixels = torch.rand(images, 3, latent * vae_factor, latent * vae_factor, device=device) * 2 - 1
    captions = CAPTIONS[:images]
    cached_x0 = backbone.encode_images(pixels)
    cached_text = backbone.encode_text(captions)
    num_sets = 2 if method == "agsm" else 1
    count = 4 * (5 if backbone.family == "mmdit" else 1)  # MM-DiT: 4 tokens in each of the first 5 blocks
    tokens = SoftTokens(count, backbone.token_width, num_sets=num_sets).to(device)
    ema = SoftTokens(count, backbone.token_width, num_sets=num_sets).to(device).requires_grad_(False)
    injector = install_tokens(backbone.denoiser, backbone.family, tokens, placement_for(backbone.family))
    denoiser = TokenDenoiser(backbone, injector, tokens, ema)
    optimizer = torch.optim.AdamW(tokens.parameters(), lr=1e-3)
    # Public code: SoftREPA's diagonal term d = 10 on UNets, 0 on SD3; AGSM on SD3 uses gamma_neg 0.1.
    diagonal = 10.0 if method == "softrepa" and backbone.family == "unet" else 0.0
    config = MethodConfig(name=method, diagonal_weight=diagonal,
                          gamma_neg=0.1 if backbone.family == "mmdit" else 1.0)
    index, pos = in_batch_captions(images, images)
    use_bf16 = mode == "ours" and precision == "bf16"
    if use_bf16:  # as `agsm train` does under mixed_precision bf16: frozen weights stored in bf16
        backbone.denoiser.to(torch.bfloat16)

    def one_step(step):
        g = torch.Generator().manual_seed(step)
        if mode == "public":
            x0, text = backbone.encode_images(pixels), backbone.encode_text(captions)
        else:
            x0, text = cached_x0, cached_text
        batch = PairBatch(x0, TextCond(**text.tensors()), index, pos)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
            if mode == "public" and method == "softrepa" and config.diagonal_weight > 0:
                loss = STEPS[method](denoiser, batch, replace(config, diagonal_weight=0.0), g)[0]
                g2 = torch.Generator().manual_seed(step)  # same t and eps: recompute the positive pairs
                t = backbone.sample_timesteps(images, g2).to(device)
                eps = torch.randn(x0.shape, generator=g2).to(device)
                pred = denoiser(backbone.add_noise(x0, eps, t), t, batch.captions, torch.zeros_like(t, dtype=torch.long))
                loss = loss + config.diagonal_weight * per_pair_mse(pred, backbone.target(x0, eps, t)).mean()
            else:
                loss = STEPS[method](denoiser, batch, config, g)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        update_ema(ema, tokens, 0.9999)

    for warm in range(3):  # warm-up: allocator, kernels, caches (one step was not enough at tiny size)
        one_step(-1 - warm)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(steps):
        one_step(step)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return {"model": model, "method": method, "mode": mode, "precision": precision if mode == "ours" else "fp32",
            "images": images, "pairs_per_step": images * images, "latent": latent, "device": device,
            "seconds_per_step": seconds, "pairs_per_s": images * images / seconds, "peak_mib": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "sd15"], choices=["tiny", "sd15", "sd3"])
    parser.add_argument("--methods", nargs="+", default=["agsm", "softrepa"], choices=["agsm", "softrepa"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=4, help="images per step; pairs = images^2")
    parser.add_argument("--latent", type=int, default=8, help="latent side (SD1.5 uses 64 at 512 px)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="for the 'ours' mode")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="benchmarks/train_step.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD:MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # child process: one measurement, printed as JSON
        method, mode = args.one[1].split(":")
        latent = 16 if args.one[0] == "tiny" else args.latent
        print(json.dumps(run_one(args.one[0], method, mode, args.steps, args.images, latent, args.precision,
                                 args.device)))
        return

    rows = []
    for model in args.models:
        for method in args.methods:
            for mode in ("public", "ours"):
                cmd = [sys.executable, __file__, "--one", model, f"{method}:{mode}", "--steps", str(args.steps),
                       "--images", str(args.images), "--latent", str(args.latent), "--precision", args.precision,
                       "--device", args.device]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{model} {method} {mode} failed:\n{out.stderr[-2000:]}")
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(_row(rows[-1]), flush=True)
    for model in args.models:
        for method in args.methods:
            pub, ours = (next(r for r in rows if r["model"] == model and r["method"] == method and r["mode"] == m)
                         for m in ("public", "ours"))
            print(f"{model:5s} {method:9s} ours / public: {ours['pairs_per_s'] / pub['pairs_per_s']:.2f}x pairs/s, "
                  f"{ours['peak_mib'] / pub['peak_mib']:.2f}x peak memory")
    Path(args.json).write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                           "rows": rows}, indent=2))
    print(f"wrote {args.json}")


def _row(r: dict) -> str:
    return (f"{r['model']:5s} {r['method']:9s} {r['mode']:7s} {r['precision']:5s} latent {r['latent']:3d} "
            f"{r['pairs_per_step']:3d} pairs  {r['seconds_per_step']:8.3f} s/step  {r['pairs_per_s']:8.2f} pairs/s  "
            f"peak {r['peak_mib']:8.0f} MiB")


if __name__ == "__main__":
    main()
