"""Which soft-token adapters a denoiser carries, which one is active and the injector that puts it in: the
bookkeeping behind `agsm.load_soft_tokens` and its siblings (agsm.pipelines, the user-facing side).

The state lives on the denoiser module (pipe.unet / pipe.transformer), not on a pipeline object, because the
injection lives there: the tokens go in through that module's attention processors and a forward pre-hook, so
every pipeline holding the module draws with them, whether made by diffusers' `from_pipe`, with
`components=pipe.components`, or by hand from the same parts. Kept on one pipeline object, the state was invisible
to the others: they could neither list nor unload the tokens they drew with, and a load through them stacked a
second injection on the first (changing the first pipeline's images too). On the module, every such pipeline
sees the same adapters and the same single injection. (diffusers keeps LoRA adapters on the modules as well.)
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import install_tokens
from .branches import by_branch
from .injector import TokenInjector
from .soft_tokens import NEGATIVE, POSITIVE, SoftTokens

STATE_ATTR = "_agsm_soft_tokens"  # the denoiser module's DenoiserTokens, while any adapter is loaded


@dataclass
class Adapter:
    source: str   # what the user passed: a path or a Hub repo id
    path: Path    # the token file it resolved to
    tokens: SoftTokens
    meta: dict[str, str]
    uncond_tokens: str
    scale: float


@dataclass
class DenoiserTokens:
    """Every adapter loaded into one denoiser module; `active` is the installed one (None: the stock module)."""

    adapters: dict[str, Adapter] = field(default_factory=dict)
    active: str | None = None
    injector: TokenInjector | None = None
    # Pipelines given bound methods (pipe.unload_soft_tokens ...), weakly: the module must not keep them alive.
    bound: list[weakref.ref] = field(default_factory=list)
    # The pipeline agsm was last called with: the guidance flags' source when no drawing pipeline is found.
    last_pipeline: weakref.ref | None = None

    def names(self) -> str:
        return ", ".join(map(repr, self.adapters)) or "none"

    def adapter(self, name: str) -> Adapter:
        if name not in self.adapters:
            raise ValueError(f"no soft tokens named {name!r} are loaded (loaded: {self.names()}); load them with "
                             f"load_soft_tokens(pipe, path, adapter_name={name!r})")
        return self.adapters[name]

    def remember(self, pipe) -> None:
        self.last_pipeline = weakref.ref(pipe)

    def fallback(self):
        return self.last_pipeline() if self.last_pipeline is not None else None

    def bound_pipelines(self) -> list:
        return [pipe for pipe in (ref() for ref in self.bound) if pipe is not None]

    def note_bound(self, pipe) -> None:
        if all(other is not pipe for other in self.bound_pipelines()):
            self.bound.append(weakref.ref(pipe))


def tokens_on(model) -> DenoiserTokens | None:
    """The denoiser's adapters, or None when none are loaded."""
    return vars(model).get(STATE_ATTR)


def tokens_for(model) -> DenoiserTokens:
    """The denoiser's adapters, created empty on first use (a load through any pipeline holding the module)."""
    state = tokens_on(model)
    if state is None:
        state = DenoiserTokens()
        # Outside nn.Module's parameter and buffer registries: no state_dict, save_pretrained or .to() sees it.
        vars(model)[STATE_ATTR] = state
    return state


def forget(model) -> None:
    """Drop the denoiser's bookkeeping (its injector must be removed already: see activate(model, state, None))."""
    vars(model).pop(STATE_ATTR, None)


def activate(model, state: DenoiserTokens, name: str | None) -> TokenInjector | None:
    """Take the current injector out of `model` and install adapter `name`'s (None: none); adapters' placements
    may differ, so each activation installs afresh. There is never more than one injector per module."""
    if state.injector is not None:
        state.injector.remove()
        state.injector = None
    state.active = name
    if name is None:
        return None
    adapter = state.adapters[name]
    injector = install_tokens(model, adapter.meta["family"], adapter.tokens, adapter.meta)
    injector.scale = adapter.scale
    if adapter.uncond_tokens == "negative":
        injector.set_index_fn = lambda batch: by_branch(model, state.fallback(), batch, NEGATIVE, POSITIVE, torch.long)
    elif adapter.uncond_tokens == "none":
        injector.hidden_fn = lambda batch: by_branch(model, state.fallback(), batch, True, False, torch.bool)
    injector.metadata = adapter.meta
    state.injector = injector
    return injector
