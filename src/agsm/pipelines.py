"""Soft tokens in stock diffusers pipelines: `load_soft_tokens(pipe, path)` and `remove_soft_tokens(pipe)`.

All checks run before the pipeline is touched. psi+ goes to both guidance branches by default
(METHOD.md, Inference); `uncond_tokens='negative'` puts psi- in the unconditional branch and
`'none'` hides the tokens from it.
"""
from __future__ import annotations

import torch

from .backbones.unet import unet_architecture
from .token_file import check_compatible, read_tokens, resolve_token_path, tokens_from_file
from .tokens import NEGATIVE, POSITIVE, UNetTokenInjector

UNCOND_CHOICES = ("positive", "negative", "none")
_ATTR = "_agsm_tokens"


def _model_info(pipe) -> dict:
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise TypeError(f"{type(pipe).__name__} has no UNet; load_soft_tokens supports StableDiffusionPipeline "
                        "and StableDiffusionXLPipeline")
    return {"family": "unet", "architecture": unet_architecture(unet),
            "token_width": unet.config.cross_attention_dim}


def load_soft_tokens(pipe, path, uncond_tokens: str = "positive") -> UNetTokenInjector:
    """Install the tokens of `path` (a soft_tokens.safetensors file or its folder) into `pipe`."""
    if uncond_tokens not in UNCOND_CHOICES:
        raise ValueError(f"uncond_tokens {uncond_tokens!r} is not one of {UNCOND_CHOICES}")
    path = resolve_token_path(path)
    tensors, meta = read_tokens(path)
    check_compatible(meta, _model_info(pipe), path)
    if uncond_tokens == "negative" and "psi_neg" not in tensors:
        raise ValueError(f"uncond_tokens='negative' needs psi-, but {path} holds only psi+ "
                         f"(method {meta.get('method')}); use uncond_tokens='positive'")
    tokens = tokens_from_file(tensors, meta).to(pipe.unet.device)
    remove_soft_tokens(pipe)
    injector = UNetTokenInjector(pipe.unet, tokens, stages=meta["stages"].split(","))
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
