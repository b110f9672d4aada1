"""SD3 pipelines without T5: their 256 all-zero T5 tokens can travel as one.

A StableDiffusion3Pipeline without text_encoder_3 appends `max_sequence_length` (256) zero tokens to the
CLIP context. They are identical and carry no position, so in every joint block they stay identical
(per-token layers treat each alike), and only attention's keys and values see how many there are. Passing
one zero token (max_sequence_length=1) and repeating its key and value `count` times inside each joint
attention computes the same function with 255 fewer context tokens through every projection and MLP
(tested against the stock form). On the tiny ShapesWorld SD3 that is most of the work.

The zero token sits right after the CLIP tokens, at `position` = the CLIP length; soft tokens appended after
it (MMDiTTokenInjector) keep their place.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

ZERO_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length


def is_t5_free(pipe) -> bool:
    return getattr(pipe, "transformer", None) is not None and getattr(pipe, "text_encoder_3", "absent") is None


def install_collapse(transformer, position: int, count: int = ZERO_TOKENS) -> list:
    """Hooks on every joint attention's context key and value projections: the token at `position` acts as
    `count` copies of itself. Contexts that already hold the zeros in full (fewer than `count` tokens would
    follow `position` otherwise) pass unchanged, so stock calls stay stock. Returns the hook handles."""
    def repeat(module, args, output):  # [B, L, D] -> [B, L - 1 + count, D]
        at = position if position >= 0 else output.shape[1] + position  # negative: counted from the end
        if output.shape[1] - at >= count:
            return None
        one = output[:, at:at + 1]
        return torch.cat([output[:, :at], one.expand(-1, count, -1), output[:, at + 1:]], dim=1)

    projections = [p for block in transformer.transformer_blocks for p in (block.attn.add_k_proj, block.attn.add_v_proj)]
    return [p.register_forward_hook(repeat) for p in projections]


@contextmanager
def collapsed_zero_tokens(transformer, position: int, count: int = ZERO_TOKENS):
    """While active, the context token at `position` acts as `count` copies of itself in every joint attention."""
    handles = install_collapse(transformer, position, count)
    try:
        yield transformer
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def fast_sampling(pipe):
    """Yields extra pipeline-call kwargs: for a T5-free SD3 pipeline, one zero token collapsed from 256 (the same
    images, faster); for any other pipeline nothing."""
    if not is_t5_free(pipe):
        yield {}
        return
    with collapsed_zero_tokens(pipe.transformer, pipe.tokenizer_max_length):
        yield {"max_sequence_length": 1}
