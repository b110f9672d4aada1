"""Step-aware scorers for SPO: a callable (images, prompts, t) -> scores [N], higher = preferred.

SPO (Liang et al.) ranks candidate x_{t-1} by a step-aware preference model that looks at the image predicted from
each candidate and knows the step t. Here that model is pluggable (method.scorer):

- `shapes_judge` (default): ShapesWorld's exact judge (shapes.verify) on the decoded prediction: 1 when it shows what
  the prompt asks for, else 0. It ignores t: the judge is exact at every step, so it needs no step awareness.
- `module.path:name`: any importable callable with that signature, or a class built with no arguments whose
  instances are (a trained step-aware preference model for real data, for instance).
"""
from __future__ import annotations

import importlib
from typing import Protocol

import torch


class Scorer(Protocol):
    def __call__(self, images: list, prompts: list[str], t: torch.Tensor) -> torch.Tensor:
        """images: N PIL images; prompts: N strings; t [N] the step each image was predicted at -> scores [N]."""


class ShapesJudgeScorer:
    """1.0 where the exact judge finds the image correct for its prompt, else 0.0."""

    def __call__(self, images: list, prompts: list[str], t: torch.Tensor) -> torch.Tensor:
        from ..shapes.verify import verify

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts; give one prompt per image")
        return torch.tensor([float(verify(image, prompt).correct) for image, prompt in zip(images, prompts)])


SCORERS = {"shapes_judge": ShapesJudgeScorer}


def load_scorer(name: str) -> Scorer:
    """A registered scorer by name, or `module.path:attribute` (a callable, or a class made with no arguments)."""
    if name in SCORERS:
        return SCORERS[name]()
    module_name, _, attribute = name.partition(":")
    if not attribute:
        raise ValueError(f"method.scorer {name!r} is neither a registered scorer ({', '.join(SCORERS)}) nor "
                         "'module.path:name' of a callable (images, prompts, t) -> scores")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"method.scorer {name!r} cannot be imported ({exc}); check the module path and name") \
            from None
    return found() if isinstance(found, type) else found
