"""Encoded prompts recombined across guidance branches (PromptCond stacks [unconditional, conditional])."""
from __future__ import annotations

import torch

from .conditioning import PromptCond


def _rows(prompt: PromptCond, pick) -> PromptCond:
    return PromptCond(*(None if x is None else pick(x) for x in (prompt.embeds, prompt.pooled, prompt.time_ids)))


def null_prompt(prompt: PromptCond) -> PromptCond:
    """The empty prompt in both branches: the unconditional half of any encoded prompt."""
    return _rows(prompt, lambda x: x[:1].expand(2, *x.shape[1:]))


def against(negative: PromptCond, positive: PromptCond) -> PromptCond:
    """`positive` with `negative`'s conditional half as its unconditional branch: CFG pushes from one to the other."""
    fields = []
    for n, p in zip((negative.embeds, negative.pooled, negative.time_ids),
                    (positive.embeds, positive.pooled, positive.time_ids)):
        fields.append(None if p is None else torch.cat([n[1:2], p[1:2]]))
    return PromptCond(*fields)
