"""Soft tokens and their one home of injection into a UNet.

`SoftTokens` holds the learned vectors: S token sets of N tokens (set 0 = psi+, set 1 = psi-) and a
time table of 100 buckets shared by all sets, added to every token (METHOD.md, "Soft tokens").
`UNetTokenInjector` wraps the cross-attention processors of the chosen UNet stages so that their
context gets the tokens inserted right after the BOS position (L -> L + N); everything else calls the
stock processor unchanged, so disabled tokens leave the UNet bit-identical.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

POSITIVE, NEGATIVE = 0, 1
STAGE_PREFIXES = {"down": "down_blocks.", "mid": "mid_block.", "up": "up_blocks."}


class SoftTokens(nn.Module):
    """psi+ / psi- token sets [S, N, D] and a time table [buckets, D] added per sample by timestep."""

    def __init__(self, num_tokens: int, width: int, num_sets: int = 2, num_buckets: int = 100,
                 num_train_timesteps: int = 1000, init_std: float = 0.02, init_tokens: torch.Tensor | None = None):
        super().__init__()
        if num_tokens < 1 or num_sets not in (1, 2) or num_buckets < 1:
            raise ValueError(f"soft tokens need num_tokens >= 1 (got {num_tokens}), num_sets 1 or 2 "
                             f"(got {num_sets}) and num_buckets >= 1 (got {num_buckets})")
        sets = torch.randn(num_sets, num_tokens, width) * init_std
        if init_tokens is not None:  # e.g. the empty prompt's BOS embedding; the random offset breaks symmetry
            sets = sets + init_tokens.reshape(1, -1, width).expand_as(sets)
        self.sets = nn.Parameter(sets)
        # Zero start: the time table is a correction on top of the tokens, not a second initialisation.
        self.time_table = nn.Parameter(torch.zeros(num_buckets, width))
        self.num_train_timesteps = num_train_timesteps

    @property
    def num_sets(self) -> int:
        return self.sets.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.sets.shape[1]

    @property
    def width(self) -> int:
        return self.sets.shape[2]

    def bucket(self, t: torch.Tensor) -> torch.Tensor:
        """Timestep (diffusion index or flow t in [0, 1000]) -> bucket index, per sample."""
        per_bucket = self.num_train_timesteps / self.time_table.shape[0]
        return (t.float() / per_bucket).long().clamp(0, self.time_table.shape[0] - 1)

    def forward(self, set_index: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """set_index [B] (0 = psi+, 1 = psi-), t [B] -> tokens [B, N, D].

        With a single set (SoftREPA, the shared-token ablation) every sample uses it.
        """
        chosen = self.sets[set_index.clamp(max=self.num_sets - 1)]  # [B, N, D]
        return chosen + self.time_table[self.bucket(t)][:, None, :]


@dataclass
class _CallState:
    """What the current UNet call injects: per-sample tokens [B, N, D], and which samples see none."""

    tokens: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # [B] bool: samples whose context gets no tokens (masked out)


class _ContextProcessor:
    """Wraps a stock attention processor: inserts the current tokens after BOS, then calls it."""

    def __init__(self, inner, injector: "UNetTokenInjector"):
        self.inner = inner
        self.injector = injector

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        state = self.injector.state
        if encoder_hidden_states is not None and state.tokens is not None:
            encoder_hidden_states, attention_mask = _insert_after_bos(
                encoder_hidden_states, attention_mask, state.tokens, state.hidden)
        return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                          attention_mask=attention_mask, **kwargs)


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


class UNetTokenInjector:
    """Installs soft tokens into a UNet2DConditionModel's cross-attention of the chosen stages.

    Per call, the tokens come from `self.tokens` (a SoftTokens) for the samples' timesteps and the
    per-sample token set chosen by `self.set_index_fn(batch)` (default: psi+ for all), or from an
    explicit `use(...)` block. `enabled = False` makes every call stock.
    """

    def __init__(self, unet, tokens: SoftTokens, stages=("down", "mid")):
        unknown = sorted(set(stages) - set(STAGE_PREFIXES))
        if unknown or not stages:
            raise ValueError(f"unknown UNet stages {unknown or list(stages)}; choose from {sorted(STAGE_PREFIXES)}")
        if tokens.width != unet.config.cross_attention_dim:
            raise ValueError(f"soft tokens of width {tokens.width} cannot go into a UNet with "
                             f"cross_attention_dim {unet.config.cross_attention_dim}")
        self.unet, self.tokens, self.stages = unet, tokens, tuple(stages)
        self.enabled = True
        self.set_index_fn = None  # batch size -> LongTensor [B] of token sets, or None for all psi+
        self.hidden_fn = None     # batch size -> BoolTensor [B] of samples that see no tokens, or None
        self.state = _CallState()
        self._forced: tuple | None = None
        self._original = dict(unet.attn_processors)
        wrapped = {name: _ContextProcessor(proc, self) if self._receives_tokens(name) else proc
                   for name, proc in self._original.items()}
        self.num_layers = sum(isinstance(p, _ContextProcessor) for p in wrapped.values())
        if self.num_layers == 0:
            raise ValueError(f"the UNet has no cross-attention layers in stages {list(stages)}")
        unet.set_attn_processor(wrapped)
        self._hook = unet.register_forward_pre_hook(self._prepare, with_kwargs=True)

    def _receives_tokens(self, name: str) -> bool:
        return ".attn2." in name and name.startswith(tuple(STAGE_PREFIXES[s] for s in self.stages))

    @contextlib.contextmanager
    def use(self, tokens: SoftTokens, set_index: torch.Tensor | None):
        """Within the block, UNet calls take tokens from `tokens` with per-sample sets `set_index`."""
        previous = self._forced
        self._forced = (tokens, set_index)
        try:
            yield
        finally:
            self._forced = previous

    def _prepare(self, module, args, kwargs):
        """UNet forward pre-hook: compute this call's tokens once for all its cross-attention layers."""
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        batch = sample.shape[0]
        if not self.enabled:
            self.state = _CallState()
            return None
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        tokens, set_index = self._forced or (self.tokens, self.set_index_fn(batch) if self.set_index_fn else None)
        if set_index is None:
            set_index = torch.full((batch,), POSITIVE, dtype=torch.long, device=sample.device)
        hidden = self.hidden_fn(batch) if self.hidden_fn else None
        self.state = _CallState(tokens(set_index.to(sample.device), t), hidden)
        return None

    def remove(self) -> None:
        """Give the UNet back its original processors; afterwards it is the stock model again."""
        self._hook.remove()
        self.unet.set_attn_processor(self._original)
        self.state = _CallState()
