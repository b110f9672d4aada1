"""Soft tokens in stock diffusers pipelines: `load_soft_tokens(pipe, path)` and `remove_soft_tokens(pipe)`.

Works for StableDiffusionPipeline, StableDiffusionXLPipeline and StableDiffusion3Pipeline (and the other
pipelines of these denoisers: img2img, inpainting ...). All checks run before the pipeline is touched.
psi+ goes to both guidance branches by default (METHOD.md, Inference); `uncond_tokens='negative'` puts
psi- in the unconditional branch and `'none'` hides the tokens from it (UNet models only).
"""
from __future__ import annotations

import torch

from .backbones.unet import unet_architecture
from .token_file import check_compatible, read_tokens, resolve_token_path, tokens_from_file
from .tokens import NEGATIVE, POSITIVE, TokenInjector, install_tokens

UNCOND_CHOICES = ("positive", "negative", "none")
_ATTR = "_agsm_tokens"


def denoiser_of(pipe):
    """The pipeline's denoising network: its UNet, or its MM-DiT transformer for SD3."""
    model = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if model is None:
        raise TypeError(f"{type(pipe).__name__} has neither a UNet nor a transformer")
    return model


def pipeline_architecture(pipe) -> str:
    """'sd15', 'sdxl' or 'sd3' (an SD3Transformer2DModel, SD3 or SD3.5)."""
    if getattr(pipe, "unet", None) is not None:
        return unet_architecture(pipe.unet)
    if type(denoiser_of(pipe)).__name__ == "SD3Transformer2DModel":
        return "sd3"
    raise TypeError(f"{type(pipe).__name__} with {type(denoiser_of(pipe)).__name__} is not supported; "
                    "agsm supports SD1.5, SDXL and SD3 pipelines")


def _model_info(pipe) -> dict:
    architecture = pipeline_architecture(pipe)
    steps = getattr(getattr(pipe, "scheduler", None), "config", {}).get("num_train_timesteps")
    if architecture == "sd3":
        return {"family": "mmdit", "architecture": architecture, "num_train_timesteps": steps,
                "token_width": pipe.transformer.config.caption_projection_dim}
    return {"family": "unet", "architecture": architecture, "num_train_timesteps": steps,
            "token_width": pipe.unet.config.cross_attention_dim}


def load_soft_tokens(pipe, path, uncond_tokens: str = "positive") -> TokenInjector:
    """Install the tokens of `path` (a soft_tokens.safetensors file or its folder) into `pipe`."""
    if uncond_tokens not in UNCOND_CHOICES:
        raise ValueError(f"uncond_tokens {uncond_tokens!r} is not one of {UNCOND_CHOICES}")
    path = resolve_token_path(path)
    tensors, meta = read_tokens(path)
    info = _model_info(pipe)
    check_compatible(meta, info, path)
    if uncond_tokens == "negative" and "psi_neg" not in tensors:
        raise ValueError(f"uncond_tokens='negative' needs psi-, but {path} holds only psi+ "
                         f"(method {meta.get('method')}); use uncond_tokens='positive'")
    if uncond_tokens == "none" and info["family"] == "mmdit":
        raise ValueError("uncond_tokens='none' is not supported on SD3 (MM-DiT has no text attention mask to hide "
                         "the tokens with); use 'positive' (the paper's choice) or 'negative'")
    model = denoiser_of(pipe)
    if info["family"] == "mmdit" and int(meta.get("blocks", 0)) > len(model.transformer_blocks):
        raise ValueError(f"soft tokens {path} go into {meta['blocks']} blocks but this transformer has "
                         f"{len(model.transformer_blocks)}; train tokens for this model with `agsm train`")
    tokens = tokens_from_file(tensors, meta).to(model.device)
    remove_soft_tokens(pipe)
    injector = install_tokens(model, info["family"], tokens, meta)
    if uncond_tokens == "negative":
        injector.set_index_fn = lambda batch: _by_branch(pipe, batch, NEGATIVE, POSITIVE, torch.long)
    elif uncond_tokens == "none":
        injector.hidden_fn = lambda batch: _by_branch(pipe, batch, True, False, torch.bool)
    injector.metadata = meta
    setattr(pipe, _ATTR, injector)
    return injector


def _by_branch(pipe, batch: int, uncond_value, cond_value, dtype):
    """Stock pipelines batch [unconditional, conditional] halves when guidance is on."""
    if not getattr(pipe, "do_classifier_free_guidance", False):
        return None
    half = batch // 2
    return torch.tensor([uncond_value] * half + [cond_value] * (batch - half), dtype=dtype)


def remove_soft_tokens(pipe) -> bool:
    """Give the pipeline back its stock UNet processors; returns whether tokens were installed."""
    injector = getattr(pipe, _ATTR, None)
    if injector is None:
        return False
    injector.remove()
    delattr(pipe, _ATTR)
    return True
