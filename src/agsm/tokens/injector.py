"""What every token injector shares: per-call token preparation from a forward pre-hook on the denoiser, the
attention-processor wrappers that carry the tokens' effect, and the token scale.

A denoiser call (UNet or MM-DiT transformer) gets its tokens computed once, from its timesteps and the
per-sample token set, before any layer runs; the layers that receive tokens read them from `state`.

Scale c (`injector.scale`, default 1): every attention layer that sees the tokens returns
    out(c) = out_without_tokens + c * (out_with_tokens - out_without_tokens),
the attention output interpolated between the stock layer (c = 0) and the trained one (c = 1), as a LoRA scale
interpolates a layer between its stock and adapted weights. c = 1 calls the wrapped processor once, exactly as in
training; c = 0 prepares no tokens at all, so every call is stock (bit-identical); values in between cost a
second attention call in the token layers only. (Adding log c to the token keys' attention logits would be the
other sound choice, but SD3's stock joint-attention processor takes no attention mask, so it could not be done
there without copying the processor.)

The wrappers sit in the attention modules' `processor` slot. A user who sets processors after loading
(`set_attn_processor`, `enable_xformers_memory_efficient_attention`, `fuse_qkv_projections` ...) replaces them;
the pre-hook notices at the next denoiser call, logs a warning and wraps the new processors, so the tokens never
vanish silently and the user's processors stay in use.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from .soft_tokens import POSITIVE, SoftTokens

log = logging.getLogger("agsm.tokens")


@dataclass
class CallState:
    """What the current denoiser call injects: per-sample tokens [B, N, D], and which samples see none."""

    tokens: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # [B] bool: samples whose context gets no tokens (masked out)


class TokenProcessor:
    """Base of the wrappers around an attention module's processor (`inner`: the stock one, or the user's)."""

    def __init__(self, inner, injector: TokenInjector):
        self.inner, self.injector = inner, injector


def unwrapped(processor):
    """The processor under any wrappers of injectors that were removed since (e.g. brought back by diffusers'
    `unfuse_qkv_projections`, which restores the processors it saw when fusing)."""
    while isinstance(processor, TokenProcessor) and processor.injector.removed:
        processor = processor.inner
    return processor


class TokenInjector:
    """Base: the pre-hook, the enable switch, the scale, per-sample token sets and explicit `use(...)` blocks.

    Per call, the tokens come from `self.tokens` for the samples' timesteps and the token set chosen by
    `self.set_index_fn(batch)` (default: psi+ for all), or from an explicit `use(...)` block.
    `enabled = False` or `scale = 0` makes every call stock. Subclasses name the model's sample argument, the
    attention modules whose processors they wrap (`attentions`) and the wrapper class (`processor_class`).
    """

    sample_arg = "sample"
    processor_class = TokenProcessor

    def __init__(self, model, tokens: SoftTokens, attentions: dict):
        self.model, self.tokens = model, tokens
        self.enabled = True
        self.scale = 1.0
        self.removed = False
        self.set_index_fn = None  # batch size -> LongTensor [B] of token sets, or None for all psi+
        self.hidden_fn = None     # batch size -> BoolTensor [B] of samples that see no tokens, or None
        self.state = CallState()
        self._forced: tuple | None = None
        self.attentions = attentions  # name -> diffusers Attention module whose processor carries the tokens
        for attention in attentions.values():
            self._wrap(attention)
        self._hook = model.register_forward_pre_hook(self._prepare, with_kwargs=True)

    @contextlib.contextmanager
    def use(self, tokens: SoftTokens, set_index: torch.Tensor | None):
        """Within the block, denoiser calls take tokens from `tokens` with per-sample sets `set_index`."""
        previous = self._forced
        self._forced = (tokens, set_index)
        try:
            yield
        finally:
            self._forced = previous

    def _prepare(self, module, args, kwargs):
        self._keep_processors()
        sample = args[0] if args else kwargs[self.sample_arg]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        batch = sample.shape[0]
        if not self.enabled or self.scale == 0:
            self.state = CallState()
            return None
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        tokens, set_index = self._forced or (self.tokens, self.set_index_fn(batch) if self.set_index_fn else None)
        if tokens.sets.device != sample.device:  # a pipeline moved after loading (pipe.to("cuda")) takes them along
            tokens.to(sample.device)
        if set_index is None:
            set_index = torch.full((batch,), POSITIVE, dtype=torch.long, device=sample.device)
        hidden = self.hidden_fn(batch) if self.hidden_fn else None
        self.state = CallState(tokens(set_index.to(sample.device), t), hidden)
        return None

    def owns(self, processor) -> bool:
        return isinstance(processor, TokenProcessor) and processor.injector is self

    def replaced_layers(self) -> list[str]:
        """Token layers whose processor is no longer this injector's wrapper."""
        return [name for name, attention in self.attentions.items() if not self.owns(attention.processor)]

    def _wrap(self, attention) -> None:
        attention.set_processor(self.processor_class(unwrapped(attention.processor), self))

    def _keep_processors(self) -> None:
        replaced = self.replaced_layers()
        if not replaced:
            return
        log.warning("the attention processors of %d of the %d layers that carry soft tokens were replaced after the "
                    "tokens were loaded (by set_attn_processor, enable_xformers_memory_efficient_attention, "
                    "fuse_qkv_projections or similar; first: %s); agsm re-installed the tokens around the new "
                    "processors, which stay in use", len(replaced), len(self.attentions), replaced[0])
        for name in replaced:
            self._wrap(self.attentions[name])

    def remove(self) -> None:
        """Detach from the model; afterwards it is the stock model again (with whatever processors the user set)."""
        self._hook.remove()
        self._restore()
        for attention in self.attentions.values():
            if self.owns(attention.processor):
                attention.set_processor(attention.processor.inner)
        self.removed = True
        self.state = CallState()

    def _restore(self) -> None:
        """Subclasses remove their own hooks here."""
