"""Soft tokens in an MM-DiT (SD3Transformer2DModel: SD3, and SD3.5 with dual-attention blocks).

METHOD.md: a separate set of tokens per transformer block for the first `num_blocks` blocks, in the
context width (after the context embedder), appended to the context stream at the block's input and
removed from its output, so each block sees fresh tokens and later blocks see the stock context length.
Hooks on the stock blocks do the appending and removing; no forward is copied. Pooled embeddings are
untouched. With tokens disabled the hooks pass everything through, so the transformer is bit-identical.

The SoftTokens hold the blocks' sets side by side: N = num_blocks x tokens_per_block, block k taking
tokens [k n, (k + 1) n). The time table is shared by every block, as in the UNet case.
"""
from __future__ import annotations

import torch

from .injector import TokenInjector
from .soft_tokens import SoftTokens


class MMDiTTokenInjector(TokenInjector):
    """Installs soft tokens into the first `num_blocks` joint blocks of an SD3Transformer2DModel."""

    sample_arg = "hidden_states"

    def __init__(self, transformer, tokens: SoftTokens, num_blocks: int = 5):
        blocks = transformer.transformer_blocks
        width = transformer.config.caption_projection_dim
        if not 1 <= num_blocks <= len(blocks):
            raise ValueError(f"tokens for {num_blocks} blocks cannot go into a transformer with {len(blocks)} "
                             f"blocks; choose tokens.blocks between 1 and {len(blocks)}")
        if tokens.width != width:
            raise ValueError(f"soft tokens of width {tokens.width} cannot go into an MM-DiT whose context width "
                             f"(caption_projection_dim) is {width}")
        if tokens.num_tokens % num_blocks:
            raise ValueError(f"{tokens.num_tokens} soft tokens cannot be split evenly over {num_blocks} blocks")
        self.transformer, self.num_blocks = transformer, num_blocks
        self.per_block = tokens.num_tokens // num_blocks
        self._handles = []
        for index, block in enumerate(blocks[:num_blocks]):
            self._handles.append(block.register_forward_pre_hook(self._appender(index), with_kwargs=True))
            self._handles.append(block.register_forward_hook(self._remover))
        super().__init__(transformer, tokens)

    def _appender(self, index: int):
        def append(module, args, kwargs):
            tokens = self.state.tokens
            if tokens is None:
                return None
            if self.state.hidden is not None:
                raise RuntimeError("hiding tokens from some samples is not supported on MM-DiT backbones")
            # The stock forward passes kwargs; gradient checkpointing passes (hidden, context, temb, kwargs).
            positional = len(args) > 1
            context = args[1] if positional else kwargs["encoder_hidden_states"]
            own = tokens[:, index * self.per_block:(index + 1) * self.per_block]
            if own.shape[0] not in (1, context.shape[0]):
                raise RuntimeError(f"soft tokens were prepared for {own.shape[0]} samples but the block got "
                                   f"{context.shape[0]}")
            context = torch.cat([context, own.to(context.dtype).expand(context.shape[0], -1, -1)], dim=1)
            if positional:
                return (args[0], context, *args[2:]), kwargs
            return args, {**kwargs, "encoder_hidden_states": context}
        return append

    def _remover(self, module, args, output):
        context, hidden = output
        if self.state.tokens is None or context is None:  # the last block may emit no context at all
            return None
        return context[:, :-self.per_block], hidden

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
