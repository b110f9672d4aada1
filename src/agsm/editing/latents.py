"""Images to latents and back with the pipeline's own VAE and image processor."""
from __future__ import annotations

import torch
from PIL import Image

from ..pipelines import pipeline_architecture


def size_multiple(pipe) -> int:
    """Image sides must be a multiple of this: the VAE's downsampling (times the patch size for SD3)."""
    multiple = pipe.vae_scale_factor
    if pipeline_architecture(pipe) == "sd3":
        multiple *= pipe.transformer.config.patch_size
    return multiple


def check_image(pipe, image) -> Image.Image:
    """An RGB PIL image whose sides the pipeline can take, or a ValueError saying how to fix it."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, got {type(image).__name__}; open the file with PIL.Image.open")
    multiple = size_multiple(pipe)
    if image.width % multiple or image.height % multiple:
        raise ValueError(f"image size {image.width}x{image.height} is not a multiple of {multiple} "
                         f"(this model's latent grid); resize it first (agsm edit --size)")
    return image.convert("RGB")


def _shift(pipe) -> float:
    return getattr(pipe.vae.config, "shift_factor", None) or 0.0


@torch.no_grad()
def encode_image(pipe, image: Image.Image) -> torch.Tensor:
    """[1, C, h, w] float32 latents: the VAE posterior's mode, shifted and scaled as the denoiser expects."""
    image = check_image(pipe, image)
    pixels = pipe.image_processor.preprocess(image, height=image.height, width=image.width)
    pixels = pixels.to(device=pipe.vae.device, dtype=pipe.vae.dtype)
    latents = pipe.vae.encode(pixels).latent_dist.mode()
    return (latents.float() - _shift(pipe)) * pipe.vae.config.scaling_factor


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor) -> Image.Image:
    pixels = pipe.vae.decode((latents / pipe.vae.config.scaling_factor + _shift(pipe)).to(pipe.vae.dtype)).sample
    return pipe.image_processor.postprocess(pixels, output_type="pil")[0]
