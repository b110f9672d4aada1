"""Switching installed soft tokens off for some of an editor's predictions (e.g. FlowEdit's source branch).

Tokens are hooks on the denoiser (`agsm.load_soft_tokens`); their injector's `enabled` flag makes a call stock
without removing anything, so an editor can run one branch with tokens and another without, forwards untouched.
"""
from __future__ import annotations

import contextlib

from ..pipelines import active_injector

# Which of an editor's predictions see installed tokens: all of them; only the target trajectory's; or only
# the conditional (prompted) branches of both, the unconditional ones stock (SD3's `--uncond-tokens none`,
# which the MM-DiT cannot do inside one batch: it has no text attention mask to hide tokens with).
TOKENS_ON = ("both", "target", "cond")


def check_tokens_on(method: str, value: str) -> None:
    if value not in TOKENS_ON:
        raise ValueError(f"{method} option tokens_on={value!r} must be one of {TOKENS_ON} "
                         "('both': tokens in every prediction; 'target': only the target prompt's; 'cond': "
                         "only the conditional branches)")


@contextlib.contextmanager
def tokens_off(pipe, off: bool = True):
    """Within the block the denoiser runs without the installed tokens (a no-op when none are installed)."""
    injector = active_injector(pipe)
    if injector is None or not off:
        yield
        return
    previous = injector.enabled
    injector.enabled = False
    try:
        yield
    finally:
        injector.enabled = previous
