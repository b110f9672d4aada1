"""Generate images with a stock diffusers pipeline and (optionally) soft tokens; record what was run."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .pipelines import load_soft_tokens

# Evaluation samplers of METHOD.md's defaults table, per architecture.
SAMPLER_DEFAULTS = {"sd15": {"steps": 30, "guidance": 7.0}, "sdxl": {"steps": 30, "guidance": 7.0}}


def load_pipeline(model: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
    from diffusers import DDIMScheduler, DiffusionPipeline

    path = Path(model)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"{path} is not a diffusers pipeline folder (no model_index.json); "
                                "pass a local folder saved with save_pretrained")
    pipe = DiffusionPipeline.from_pretrained(str(path), torch_dtype=dtype, safety_checker=None,
                                             requires_safety_checker=False)
    if hasattr(pipe.scheduler, "alphas_cumprod"):  # the paper samples UNet models with DDIM
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def read_prompts(prompt: str | None, prompts_file: str | None) -> list[str]:
    if bool(prompt) == bool(prompts_file):
        raise ValueError("give exactly one of --prompt TEXT or --prompts FILE (one prompt per line)")
    if prompt:
        return [prompt]
    lines = [line.strip() for line in Path(prompts_file).read_text().splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise ValueError(f"{prompts_file} holds no prompts; write one prompt per line")
    return prompts


def sample(model, prompts: list[str], out_dir, seed: int = 0, tokens=None, steps: int | None = None,
           guidance: float | None = None, size: int | None = None, uncond_tokens: str = "positive",
           device: str = "cpu") -> list[Path]:
    pipe = load_pipeline(model, device)
    from .backbones.unet import unet_architecture

    defaults = SAMPLER_DEFAULTS[unet_architecture(pipe.unet)]
    steps, guidance = steps or defaults["steps"], guidance if guidance is not None else defaults["guidance"]
    size = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if tokens:
        load_soft_tokens(pipe, tokens, uncond_tokens=uncond_tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator(device="cpu").manual_seed(seed + i)
        image = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                     generator=generator).images[0]
        paths.append(out / f"{i:04d}.png")
        image.save(paths[-1])
    record = {"model": str(model), "tokens": str(tokens) if tokens else None, "uncond_tokens": uncond_tokens,
              "seed": seed, "steps": steps, "guidance": guidance, "size": size,
              "images": [{"file": p.name, "prompt": q, "seed": seed + i} for i, (p, q) in enumerate(zip(paths, prompts))]}
    (out / "run.json").write_text(json.dumps(record, indent=2))
    return paths
