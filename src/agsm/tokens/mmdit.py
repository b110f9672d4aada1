"""Soft tokens in an MM-DiT (SD3Transformer2DModel: SD3, and SD3.5 with dual-attention blocks).

docs/method.md: a separate set of tokens per transformer block for the first `num_blocks` blocks, in the
context width (after the context embedder), appended to the context stream at the block's input and
removed from its output, so each block sees fresh tokens and later blocks see the stock context length.
Hooks on the stock blocks do the appending and removing; no forward is copied. Pooled embeddings are
untouched. With tokens disabled the hooks pass everything through, so the transformer is bit-identical.

The tokens reach the other rows only through the block's joint attention (norms and feed-forwards act per
row), so the token scale c (injector.py) interpolates that attention: a wrapper around the block's joint
processor calls it with and without the block's tokens and mixes the image rows and the text rows,
out(c) = out_without + c (out_with - out_without); the token rows themselves are dropped after the block.

The SoftTokens hold the blocks' sets side by side: N = num_blocks x tokens_per_block, block k taking
tokens [k n, (k + 1) n). The time table is shared by every block, as in the UNet case.
"""
from __future__ import annotations

import torch

from .injector import TokenInjector, TokenProcessor
from .soft_tokens import SoftTokens


class _JointProcessor(TokenProcessor):
    """Wraps a block's joint-attention processor: at a scale other than 1, mixes its outputs with and without
    the block's tokens (the last `per_block` rows of the context, appended by the block's pre-hook)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        with_tokens = self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                                 attention_mask=attention_mask, **kwargs)
        scale, n = self.injector.scale, self.injector.per_block
        if scale == 1 or self.injector.state.tokens is None or encoder_hidden_states is None:
            return with_tokens
        image, context = with_tokens
        image_without, context_without = self.inner(attn, hidden_states, attention_mask=attention_mask,
                                                    encoder_hidden_states=encoder_hidden_states[:, :-n], **kwargs)
        # context [B, L + n, D]: the text rows are mixed; the token rows pass on, to be dropped after the block.
        context = torch.cat([torch.lerp(context_without, context[:, :-n], scale), context[:, -n:]], dim=1)
        return torch.lerp(image_without, image, scale), context


class MMDiTTokenInjector(TokenInjector):
    """Installs soft tokens into the first `num_blocks` joint blocks of an SD3Transformer2DModel."""

    sample_arg = "hidden_states"
    processor_class = _JointProcessor

    def __init__(self, transformer, tokens: SoftTokens, num_blocks: int = 5):
        blocks = transformer.transformer_blocks
        width = transformer.config.caption_projection_dim
        if not 1 <= num_blocks <= len(blocks):
            raise ValueError(f"tokens for {num_blocks} blocks cannot go into a transformer with {len(blocks)} "
                             f"blocks; choose tokens.blocks between 1 and {len(blocks)}")
        if tokens.width != width:
            raise ValueError(f"soft tokens of width {tokens.width} cannot go into an MM-DiT whose context width "
                             f"(caption_projection_dim) is {width}")
        if tokens.total_tokens % num_blocks:
            raise ValueError(f"{tokens.total_tokens} soft tokens cannot be split evenly over {num_blocks} blocks")
        self.transformer, self.num_blocks = transformer, num_blocks
        self.per_block = tokens.total_tokens // num_blocks
        self._handles = []
        for index, block in enumerate(blocks[:num_blocks]):
            self._handles.append(block.register_forward_pre_hook(self._appender(index), with_kwargs=True))
            self._handles.append(block.register_forward_hook(self._remover))
        super().__init__(transformer, tokens, {f"transformer_blocks.{i}.attn": block.attn
                                               for i, block in enumerate(blocks[:num_blocks])})

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
