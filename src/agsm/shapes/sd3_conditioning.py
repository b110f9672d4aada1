"""The text conditioning of a StableDiffusion3Pipeline without T5, built from token ids for training, and a
cheaper exact form of it.

    context, pooled = encode_ids(text_encoder, text_encoder_2, ids, ids_2, joint_dim)   # == pipe.encode_prompt
    context, pooled = encode_ids(..., t5_tokens=1)
    with collapsed_zero_tokens(transformer):          # one zero token acts as the pipeline's 256
        pred = transformer(x_t, context, pooled, t).sample
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones import t5_free

T5_TOKENS = t5_free.ZERO_TOKENS  # StableDiffusion3Pipeline's default max_sequence_length: zeros for the absent T5


def encode_ids(text_encoder, text_encoder_2, ids, ids_2, joint_dim: int, t5_tokens: int = T5_TOKENS):
    """(prompt_embeds [B, L + t5_tokens, joint_dim], pooled [B, 2 * proj]) as StableDiffusion3Pipeline.encode_prompt
    builds them from token ids with no T5: penultimate hidden states side by side, zero-padded to the joint width,
    then zero tokens; pooled = both projected end-of-text states."""
    out, out_2 = (enc(i, output_hidden_states=True) for enc, i in ((text_encoder, ids), (text_encoder_2, ids_2)))
    clip = torch.cat([out.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
    clip = F.pad(clip, (0, joint_dim - clip.shape[-1]))
    zeros = clip.new_zeros(clip.shape[0], t5_tokens, joint_dim)
    return torch.cat([clip, zeros], dim=1), torch.cat([out.text_embeds, out_2.text_embeds], dim=-1)


def collapsed_zero_tokens(transformer, count: int = T5_TOKENS):
    """While active, a context whose last token is one of the absent T5's zero tokens acts as the stock context
    with `count` of them (agsm.backbones.t5_free: the same function, checked by `check_collapse`, tested, with 17
    instead of 272 context tokens through every projection and MLP)."""
    return t5_free.collapsed_zero_tokens(transformer, -1, count)


@torch.no_grad()
def check_collapse(transformer, context, pooled, count: int = T5_TOKENS) -> float:
    """Relative difference of the collapsed context (last token a zero token) against the stock one; raises if
    they disagree, e.g. under a diffusers whose joint attention no longer calls add_k_proj / add_v_proj."""
    g = torch.Generator(device=context.device).manual_seed(0)
    config = transformer.config
    shape = (len(context), config.in_channels, config.sample_size, config.sample_size)
    xt = torch.randn(shape, generator=g, device=context.device)
    t = torch.full((len(context),), 500.0, device=context.device)
    full = transformer(xt, F.pad(context, (0, 0, 0, count - 1)), pooled, t).sample  # count zero tokens in all
    with collapsed_zero_tokens(transformer, count):
        short = transformer(xt, context, pooled, t).sample
    diff = ((full - short).abs().max() / full.abs().max()).item()
    if not diff < 1e-3:
        raise RuntimeError(f"the collapsed zero-token context differs from the stock one by {diff:.2e} (relative); "
                           "this diffusers version computes joint attention differently: train without the collapse")
    return diff
