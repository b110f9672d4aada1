"""What every token injector shares: per-call token preparation from a forward pre-hook on the denoiser.

A denoiser call (UNet or MM-DiT transformer) gets its tokens computed once, from its timesteps and the
per-sample token set, before any layer runs; the layers that receive tokens read them from `state`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .soft_tokens import POSITIVE, SoftTokens


@dataclass
class CallState:
    """What the current denoiser call injects: per-sample tokens [B, N, D], and which samples see none."""

    tokens: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # [B] bool: samples whose context gets no tokens (masked out)


class TokenInjector:
    """Base: the pre-hook, the enable switch, per-sample token sets, and explicit `use(...)` blocks.

    Per call, the tokens come from `self.tokens` for the samples' timesteps and the token set chosen by
    `self.set_index_fn(batch)` (default: psi+ for all), or from an explicit `use(...)` block.
    `enabled = False` makes every call stock. Subclasses name the model's sample and timestep arguments.
    """

    sample_arg = "sample"

    def __init__(self, model, tokens: SoftTokens):
        self.model, self.tokens = model, tokens
        self.enabled = True
        self.set_index_fn = None  # batch size -> LongTensor [B] of token sets, or None for all psi+
        self.hidden_fn = None     # batch size -> BoolTensor [B] of samples that see no tokens, or None
        self.state = CallState()
        self._forced: tuple | None = None
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
        sample = args[0] if args else kwargs[self.sample_arg]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        batch = sample.shape[0]
        if not self.enabled:
            self.state = CallState()
            return None
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        tokens, set_index = self._forced or (self.tokens, self.set_index_fn(batch) if self.set_index_fn else None)
        if set_index is None:
            set_index = torch.full((batch,), POSITIVE, dtype=torch.long, device=sample.device)
        hidden = self.hidden_fn(batch) if self.hidden_fn else None
        self.state = CallState(tokens(set_index.to(sample.device), t), hidden)
        return None

    def remove(self) -> None:
        """Detach from the model; afterwards it is the stock model again."""
        self._hook.remove()
        self._restore()
        self.state = CallState()

    def _restore(self) -> None:
        raise NotImplementedError
