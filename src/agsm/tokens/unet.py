"""Soft tokens in a UNet2DConditionModel (SD1.5, SDXL).

`UNetTokenInjector` wraps the cross-attention processors of the chosen UNet stages so that their
context gets the tokens inserted right after the BOS position (L -> L + N); everything else calls the
stock processor unchanged, so disabled tokens leave the UNet bit-identical. At a scale c other than 1 the
wrapper also runs the processor without the tokens and interpolates the two outputs (injector.py).
"""
from __future__ import annotations

import torch

from .injector import TokenInjector, TokenProcessor
from .soft_tokens import SoftTokens

STAGE_PREFIXES = {"down": "down_blocks.", "mid": "mid_block.", "up": "up_blocks."}


class _ContextProcessor(TokenProcessor):
    """Wraps a cross-attention processor: inserts the current tokens after BOS, then calls it."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        state = self.injector.state
        if encoder_hidden_states is None or state.tokens is None:
            return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, **kwargs)
        context, mask = _insert_after_bos(encoder_hidden_states, attention_mask, state.tokens, state.hidden)
        with_tokens = self.inner(attn, hidden_states, encoder_hidden_states=context, attention_mask=mask, **kwargs)
        scale = self.injector.scale
        if scale == 1:
            return with_tokens
        without = self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                             attention_mask=attention_mask, **kwargs)
        return torch.lerp(without, with_tokens, scale)


def _insert_after_bos(context, mask, tokens, hidden):
    """context [B, L, D], tokens [B or 1, N, D] -> [B, L + N, D]; a mask bias (if any) grows to match."""
    batch, n = context.shape[0], tokens.shape[1]
    if tokens.shape[0] not in (1, batch):
        raise RuntimeError(f"soft tokens were prepared for {tokens.shape[0]} samples but the UNet got {batch}")
    tokens = tokens.to(context.dtype).expand(batch, -1, -1)
    context = torch.cat([context[:, :1], tokens, context[:, 1:]], dim=1)
    if mask is None and hidden is None:
        return context, None
    # Additive bias over keys; hidden samples get -inf on the token keys so they attend as if absent.
    if mask is None:
        mask = context.new_zeros(batch, 1, context.shape[1] - n)
    token_bias = mask.new_zeros(mask.shape[0], mask.shape[1], n)
    if hidden is not None:
        token_bias[hidden.to(mask.device)] = torch.finfo(mask.dtype).min
    mask = torch.cat([mask[..., :1], token_bias, mask[..., 1:]], dim=-1)
    return context, mask


class UNetTokenInjector(TokenInjector):
    """Installs soft tokens into a UNet2DConditionModel's cross-attention of the chosen stages."""

    processor_class = _ContextProcessor

    def __init__(self, unet, tokens: SoftTokens, stages=("down", "mid")):
        unknown = sorted(set(stages) - set(STAGE_PREFIXES))
        if unknown or not stages:
            raise ValueError(f"unknown UNet stages {unknown or list(stages)}; choose from {sorted(STAGE_PREFIXES)}")
        if tokens.width != unet.config.cross_attention_dim:
            raise ValueError(f"soft tokens of width {tokens.width} cannot go into a UNet with "
                             f"cross_attention_dim {unet.config.cross_attention_dim}")
        self.unet, self.stages = unet, tuple(stages)
        prefixes = tuple(STAGE_PREFIXES[s] for s in self.stages)
        attentions = {name: module for name, module in unet.named_modules()
                      if name.rsplit(".", 1)[-1] == "attn2" and name.startswith(prefixes)
                      and hasattr(module, "set_processor")}
        self.num_layers = len(attentions)
        if self.num_layers == 0:
            raise ValueError(f"the UNet has no cross-attention layers in stages {list(stages)}")
        super().__init__(unet, tokens, attentions)
