"""Generate images with a stock diffusers pipeline and (optionally) soft tokens; record what was run."""
from __future__ import annotations

from pathlib import Path

import torch

from .atomic_files import write_json
from .backbones.base import load_stock_pipeline
from .backbones.t5_free import fast_sampling
from .pipelines import denoiser_of, load_soft_tokens, pipeline_architecture

# Evaluation samplers of METHOD.md's defaults table, per architecture (SD3: its own flow Euler scheduler).
SAMPLER_DEFAULTS = {"sd15": {"steps": 30, "guidance": 7.0}, "sdxl": {"steps": 30, "guidance": 7.0},
                    "sd3": {"steps": 28, "guidance": 4.0}}


def load_pipeline(model: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
    from diffusers import DDIMScheduler

    pipe = load_stock_pipeline(model, dtype)
    if hasattr(pipe.scheduler, "alphas_cumprod"):  # the paper samples UNet models with DDIM
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def default_size(pipe) -> int:
    """The image side the pipeline's denoiser was built for."""
    return denoiser_of(pipe).config.sample_size * pipe.vae_scale_factor


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
    defaults = SAMPLER_DEFAULTS[pipeline_architecture(pipe)]
    steps, guidance = steps or defaults["steps"], guidance if guidance is not None else defaults["guidance"]
    size = size or default_size(pipe)
    if tokens:
        load_soft_tokens(pipe, tokens, uncond_tokens=uncond_tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with fast_sampling(pipe) as fast:  # T5-free SD3: the same images with one zero token instead of 256
        for i, prompt in enumerate(prompts):
            generator = torch.Generator(device="cpu").manual_seed(seed + i)
            image = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                         generator=generator, **fast).images[0]
            paths.append(out / f"{i:04d}.png")
            image.save(paths[-1])
    record = {"model": str(model), "tokens": str(tokens) if tokens else None, "uncond_tokens": uncond_tokens,
              "seed": seed, "steps": steps, "guidance": guidance, "size": size,
              "images": [{"file": p.name, "prompt": q, "seed": seed + i} for i, (p, q) in enumerate(zip(paths, prompts))]}
    write_json(out / "run.json", record)
    return paths
