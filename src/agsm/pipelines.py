"""Soft tokens in stock diffusers pipelines, loaded, scaled, switched and unloaded the way diffusers handles
its add-ons (LoRA, IP-Adapter):

    from agsm import load_soft_tokens, set_soft_tokens_scale, unload_soft_tokens
    load_soft_tokens(pipe, "runs/sd15-agsm")                  # a folder, a token file, or a Hub repo id
    set_soft_tokens_scale(pipe, 0.5)                          # 0 = the stock pipeline, 1 = as trained
    unload_soft_tokens(pipe)                                  # the stock pipeline again

Works for StableDiffusionPipeline, StableDiffusionXLPipeline and StableDiffusion3Pipeline (and the other
pipelines of these denoisers: img2img, inpainting ...), whose classes stay stock: tokens go in through attention
processors and hooks (agsm.tokens). Every check runs before the pipeline is touched.
psi+ goes to both guidance branches by default (docs/method.md, Inference); `uncond_tokens='negative'` puts
psi- in the unconditional branch and `'none'` hides the tokens from it (UNet models only).

Adapter names. Several token files may be loaded, each under its own `adapter_name`, and exactly one of them (or
none) is active: the one loaded last, or the one `set_soft_tokens_adapter(pipe, name)` picks. This follows
diffusers, which keeps every loaded LoRA adapter and makes the newly loaded one active, so switching back costs
no file access. Unlike LoRA weights, which add up, two token sets are never combined: each was trained alone
against the frozen backbone, as the only tokens in the context, and a context holding two sets is one that no
training saw. Loading under a name already in use replaces that adapter; both events are logged.

The scale (per adapter, kept when switching) interpolates every token-carrying attention layer's output between
the stock layer and the trained one, as a LoRA scale does (agsm.tokens.injector): 0 gives images bit-identical to
the stock pipeline, 1 exactly the trained behaviour, values in between lie between them, above 1 extrapolates.

Shared denoisers. The adapters and their injection belong to the denoiser module (pipe.unet / pipe.transformer),
not to the pipeline object (agsm.tokens.adapters keeps them there): the tokens go in through that module's
processors and hooks, so every pipeline holding it draws with them, e.g. `StableDiffusionImg2ImgPipeline.from_pipe
(pipe)`, a pipeline built with `components=pipe.components` or by hand from the same parts. Each of them lists,
scales, switches and unloads the same adapters, and a load through any of them replaces an adapter of the same
name and the one injection, never stacking a second. `uncond_tokens` follows the guidance of whichever of them is
drawing (agsm.tokens.branches).
"""
from __future__ import annotations

import logging
import math
import types
from dataclasses import dataclass

from .backbones.unet import unet_architecture
from .tokens.adapters import Adapter, DenoiserTokens, activate, forget, tokens_for, tokens_on
from .tokens.token_file import check_compatible, locate_token_file, read_tokens, tokens_from_file
from .tokens import TokenInjector

log = logging.getLogger("agsm.pipelines")
UNCOND_CHOICES = ("positive", "negative", "none")


@dataclass(frozen=True)
class SoftTokenAdapter:
    """One loaded adapter, as `list_soft_tokens` reports it."""

    name: str
    source: str
    path: str
    scale: float
    uncond_tokens: str
    active: bool
    method: str | None
    step: int | None
    architecture: str | None
    total_tokens: int  # every token of a set, all blocks together


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


def load_soft_tokens(pipe, source, *, adapter_name: str = "default", scale: float = 1.0,
                     uncond_tokens: str = "positive", subfolder: str | None = None, weight_name: str | None = None,
                     revision: str | None = None) -> TokenInjector:
    """Load soft tokens into `pipe` under `adapter_name` and make them the active adapter; returns its injector.

    Adapters loaded earlier under other names stay loaded but inactive (one active at a time: each token set was
    trained as the only one in the context, see the module docstring); `adapter_name` already in use is replaced.

    `source`: a soft_tokens.safetensors file, its folder (a training run's output folder), or a Hugging Face Hub
    repo id, from which `subfolder`/`weight_name` (default soft_tokens.safetensors) at `revision` is fetched into
    the Hub cache (HF_HUB_OFFLINE: from the cache only). A local path always wins and never touches the network.
    `weight_name="soft_tokens_ema.safetensors"` picks a run's EMA tokens. `scale`: see set_soft_tokens_scale.
    """
    _check_name(adapter_name)
    scale = _checked_scale(scale)
    if uncond_tokens not in UNCOND_CHOICES:
        raise ValueError(f"uncond_tokens {uncond_tokens!r} is not one of {UNCOND_CHOICES}")
    path = locate_token_file(source, subfolder=subfolder, weight_name=weight_name, revision=revision)
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
    _warn_if_other_backbone(pipe, meta, path)

    # The same bookkeeping for every pipeline holding this denoiser (from_pipe, components=): a name loaded through
    # any of them replaces that adapter, and its injection replaces the one installed, never adding a second.
    state = tokens_for(model)
    others = sorted(set(state.adapters) - {adapter_name})
    if adapter_name in state.adapters:
        log.info("soft tokens %r: replacing %s with %s", adapter_name, state.adapters[adapter_name].path, path)
    elif others:
        log.info("soft tokens %r loaded from %s and now active; %s stay loaded (set_soft_tokens_adapter(pipe, name) "
                 "switches back)", adapter_name, path, ", ".join(map(repr, others)))
    state.adapters[adapter_name] = Adapter(str(source), path, tokens, meta, uncond_tokens, scale)
    _touch(pipe, state)
    return activate(model, state, adapter_name)


def _warn_if_other_backbone(pipe, meta: dict[str, str], path) -> None:
    """Tokens trained on one backbone (say a DPO-tuned UNet) still load on another of the same architecture, but
    were fitted to the first: say so, naming both, when the denoiser's content hash differs from the recorded one.
    The hash is computed once per denoiser module (variants.content_hash caches it)."""
    import json

    from .backbones.variants import denoiser_hash, describe_backbone

    try:
        record = json.loads(meta.get("trained_on") or "null")
    except ValueError:
        return
    if not isinstance(record, dict) or not record.get("denoiser_hash"):
        return  # older files keep no record
    here = denoiser_hash(pipe)
    if record["denoiser_hash"] != here:
        source = getattr(pipe, "name_or_path", None) or "this pipeline"
        log.warning("soft tokens %s were trained on %s, but this pipeline's denoiser (%s) hashes to %s: another "
                    "denoiser, LoRA or model. They load, but were fitted to the other backbone; load the same "
                    "denoiser and LoRA (agsm sample --denoiser / --lora) to use them as trained", path,
                    describe_backbone(record), source, here)


def set_soft_tokens_adapter(pipe, adapter_name: str | None) -> TokenInjector | None:
    """Make the loaded adapter `adapter_name` the active one (None: none, the stock pipeline, all kept loaded)."""
    model, state = _loaded(pipe)
    if adapter_name is not None:
        state.adapter(adapter_name)
    _touch(pipe, state)
    if adapter_name == state.active:
        return state.injector
    return activate(model, state, adapter_name)


def set_soft_tokens_scale(pipe, scale: float, adapter_name: str | None = None) -> None:
    """Set an adapter's scale (default: the active adapter's): 0 = the stock pipeline (bit-identical images),
    1 = as trained, in between = each token-carrying attention layer's output interpolated between the two,
    above 1 = extrapolated. An inactive adapter keeps its scale until it is activated."""
    scale = _checked_scale(scale)
    _, state = _loaded(pipe)
    name = adapter_name if adapter_name is not None else state.active
    if name is None:
        raise ValueError(f"no soft tokens are active (loaded: {state.names()}); pass adapter_name=, or activate one "
                         "with set_soft_tokens_adapter(pipe, name)")
    state.adapter(name).scale = scale
    _touch(pipe, state)
    if name == state.active:
        state.injector.scale = scale


def unload_soft_tokens(pipe, adapter_name: str | None = None) -> bool:
    """Unload one adapter, or all of them (None), giving back the stock pipeline; returns whether any was loaded.

    Unloading the active adapter leaves the pipeline stock even when others stay loaded (it never switches to
    another file by itself); `set_soft_tokens_adapter` activates one of them. Every pipeline sharing the denoiser
    sees the unload.
    """
    model = denoiser_of(pipe)
    state = tokens_on(model)
    if adapter_name is None:
        if state is None:
            return False
        _forget_all(model, state)
        return True
    if state is None:
        raise ValueError(f"no soft tokens named {adapter_name!r} are loaded (none are); nothing to unload")
    state.adapter(adapter_name)
    if state.active == adapter_name:
        activate(model, state, None)
    del state.adapters[adapter_name]
    if not state.adapters:
        _forget_all(model, state)
    elif state.active is None:
        log.info("soft tokens %r unloaded; the pipeline runs without tokens, %s stay loaded "
                 "(set_soft_tokens_adapter(pipe, name) activates one)", adapter_name, state.names())
    return True


def list_soft_tokens(pipe) -> dict[str, SoftTokenAdapter]:
    """The loaded adapters by name (empty when none), each with its file, scale and whether it is active."""
    state = tokens_on(denoiser_of(pipe))
    if state is None:
        return {}
    return {name: SoftTokenAdapter(name, a.source, str(a.path), a.scale, a.uncond_tokens, name == state.active,
                                   a.meta.get("method"), int(a.meta["step"]) if "step" in a.meta else None,
                                   a.meta.get("architecture"), a.tokens.total_tokens)
            for name, a in state.adapters.items()}


def active_injector(pipe) -> TokenInjector | None:
    """The injector of the active adapter in `pipe`'s denoiser, None when none is active (editing/token_scope.py
    switches it off for some predictions)."""
    state = tokens_on(denoiser_of(pipe))
    return state.injector if state is not None else None


def _forget_all(model, state: DenoiserTokens) -> None:
    activate(model, state, None)
    forget(model)
    for pipe in state.bound_pipelines():
        _unbind_methods(pipe)


# Bound to the pipeline instance while tokens are loaded: pipe.set_soft_tokens_scale(0.5), pipe.unload_soft_tokens().
_METHODS = {"set_soft_tokens_scale": set_soft_tokens_scale, "set_soft_tokens_adapter": set_soft_tokens_adapter,
            "unload_soft_tokens": unload_soft_tokens, "list_soft_tokens": list_soft_tokens}


def _touch(pipe, state: DenoiserTokens) -> None:
    """`pipe` is the one agsm was called with last (guidance flags come from it when no drawing pipeline is found,
    agsm.tokens.branches) and gets the bound methods, removed from every such pipeline when the last adapter goes."""
    state.remember(pipe)
    for name, function in _METHODS.items():
        if not hasattr(type(pipe), name):  # never shadow a method the pipeline class itself has
            setattr(pipe, name, types.MethodType(function, pipe))
    state.note_bound(pipe)


def _unbind_methods(pipe) -> None:
    for name, function in _METHODS.items():
        if getattr(vars(pipe).get(name), "__func__", None) is function:
            delattr(pipe, name)


def _loaded(pipe) -> tuple[object, DenoiserTokens]:
    model = denoiser_of(pipe)
    state = tokens_on(model)
    if state is None:
        raise ValueError(f"no soft tokens are loaded into this {type(pipe).__name__}; load some with "
                         "load_soft_tokens(pipe, path_or_hub_id)")
    return model, state


def _check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"adapter_name {name!r} must be a non-empty string, e.g. 'default'")


def _checked_scale(scale) -> float:
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(scale, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"soft token scale {scale!r} must be a finite number >= 0 (0: the stock pipeline, 1: as "
                         "trained)")
    return value
