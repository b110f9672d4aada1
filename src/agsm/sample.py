"""Generate images with a stock diffusers pipeline and (optionally) soft tokens; record what was run.

    agsm sample --model src/agsm/shapes/models/sd15-tiny --tokens runs/demo/sd15/agsm --prompt "a red circle" \
        --images-per-prompt 4 --batch-size 4 --out runs/samples

Image j of prompt p is drawn from seed + p * N + j (N = --images-per-prompt) with its own generator, so batching
(--batch-size images per pipeline call) gives the same images as drawing them one by one, and any image can be
redrawn alone. Files are named p<prompt index>_i<image index>.png; run.json records every setting and image.

An --out folder that already holds images is refused: a second run with fewer prompts would leave the first run's
extra images beside its own, which its run.json does not describe. --overwrite deletes them first.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from .utils.atomic_files import write_json, write_png
from .backbones.base import load_stock_pipeline
from .backbones.model_source import resolve_model
from .backbones.variants import BackboneVariant, apply_variant
from .draw import draw_batches
from .utils.devices import dtype_name, resolve_device_and_dtype
from .pipelines import denoiser_of, load_soft_tokens
from .utils.progress import progress
from .backbones.sampler_defaults import resolve_sampler_settings


def load_pipeline(model: str | Path, device: str = "cpu", dtype: torch.dtype | str = torch.float32,
                  variant: BackboneVariant | None = None, *, revision: str | None = None,
                  weights_variant: str | None = None):
    """The stock pipeline of a local folder or a Hugging Face Hub id (at `revision`, with diffusers' `weights_variant`
    such as fp16; agsm.backbones.model_source: a local folder always wins, a cached id loads offline) on `device` in
    `dtype` (either may be 'auto', see agsm.utils.devices), with DDIM for UNet models and diffusers' own per-step bar
    off (our commands show one bar per job). `variant`: another denoiser and/or a LoRA in place of the model's own
    (agsm.backbones.variants)."""
    from diffusers import DDIMScheduler

    device, dtype = resolve_device_and_dtype(device, dtype)
    source = resolve_model(model, revision, weights_variant)
    pipe = apply_variant(load_stock_pipeline(source.folder, dtype, source.weights_variant), variant)
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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
RECORD_NAME = "run.json"


def prepare_out_folder(out: Path, overwrite: bool) -> None:
    """Make `out`; with images (or a run.json) of another run in it, refuse, or with `overwrite` delete those first.

    Only the images and run.json are removed: anything else a user keeps there is left alone."""
    old = [p for p in out.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.name == RECORD_NAME)] \
        if out.is_dir() else []
    if old and not overwrite:
        from .utils.counts import count

        images = sum(p.name != RECORD_NAME for p in old)
        raise ValueError(f"--out {out} already holds {count(images, 'image')} of another run (and its {RECORD_NAME}); "
                         "give another --out folder, or add --overwrite to delete them first")
    for path in old:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def image_file(prompt_index: int, image_index: int) -> str:
    """'p0003_i01.png': image 1 of prompt 3."""
    return f"p{prompt_index:04d}_i{image_index:02d}.png"


def sample(model, prompts: list[str], out_dir, seed: int = 0, tokens=None, steps: int | None = None,
           guidance: float | None = None, size: int | None = None, uncond_tokens: str = "positive",
           device: str = "auto", dtype: str | torch.dtype = "auto", negative_prompt: str | None = None,
           images_per_prompt: int = 1, batch_size: int = 4, show_progress: bool = True,
           token_scale: float = 1.0, variant: BackboneVariant | None = None, overwrite: bool = False,
           align=None) -> list[Path]:
    """Draw `images_per_prompt` images of each prompt into out_dir and write run.json; returns the image paths.

    steps / guidance None: the model's recommended sampler, else its architecture's (agsm.backbones.sampler_defaults).
    token_scale: how strongly the tokens act, 0 (the base model) to 1 (as trained); see agsm.set_soft_tokens_scale.
    variant: another denoiser and/or a LoRA on the model (agsm.backbones.variants), applied before the tokens.
    overwrite: delete the images and run.json already in out_dir (else such a folder is refused, before loading).
    align: agsm.guidance.options.AlignOptions, to sample with alignment guidance (docs/alignment_guidance.md).
    """
    for name, value in (("images-per-prompt", images_per_prompt), ("batch-size", batch_size)):
        if value < 1:
            raise ValueError(f"--{name} {value} must be >= 1")
    if size is not None and size < 8:
        raise ValueError(f"--size {size} must be at least 8 pixels")
    if token_scale != 1.0 and not tokens:
        raise ValueError(f"--token-scale {token_scale} needs --tokens (without tokens the base model is drawn)")
    aligned = align.guidance_for(prompts) if align is not None else None  # negatives first: errors before loading
    out = Path(out_dir)
    if out.is_dir() and not overwrite:
        prepare_out_folder(out, overwrite=False)  # refuse before paying for the model load
    device, dtype = resolve_device_and_dtype(device, dtype)
    source = resolve_model(model)  # a Hub id's revision and weights variant ride on a ModelSource (--model-revision)
    pipe = load_pipeline(source, device, dtype, variant)
    sampler = resolve_sampler_settings(pipe, steps, guidance)
    size = size or default_size(pipe)
    if tokens:
        load_soft_tokens(pipe, tokens, uncond_tokens=uncond_tokens, scale=token_scale)
    prepare_out_folder(out, overwrite)
    per = images_per_prompt
    jobs = [{"file": image_file(p, j), "prompt_index": p, "image_index": j, "prompt": prompt,
             "seed": seed + p * per + j} for p, prompt in enumerate(prompts) for j in range(per)]
    with progress(total=len(jobs), desc="sampling", unit="img", disable=not show_progress) as bar, \
            (aligned.applied(pipe) if aligned is not None else nullcontext()):
        for batch, images in draw_batches(pipe, [job["prompt"] for job in jobs], [job["seed"] for job in jobs],
                                          steps=sampler.steps, guidance=sampler.guidance, batch_size=batch_size,
                                          size=size, negative_prompt=negative_prompt):
            for i, image in zip(batch, images):
                write_png(out / jobs[i]["file"], image)  # saved per batch: a kill keeps whole images only
            bar.update(len(batch))
    record = {**source.record(), "tokens": str(tokens) if tokens else None, "uncond_tokens": uncond_tokens,
              "token_scale": token_scale, "variant": variant.describe() if variant and not variant.is_stock else None,
              "prompts": list(prompts), "negative_prompt": negative_prompt, "seed": seed,
              "images_per_prompt": per, "batch_size": batch_size, "steps": sampler.steps,
              "guidance": sampler.guidance, "sampler_source": sampler.source,
              "scheduler": type(pipe.scheduler).__name__, "size": size, "device": device, "dtype": dtype_name(dtype),
              "images": jobs}
    if aligned is not None:  # only then: run.json of plain sampling keeps its keys
        record["align_guidance"] = {**align.describe(), "negatives_table": aligned.negatives}
    write_json(out / RECORD_NAME, record)
    return [out / job["file"] for job in jobs]

