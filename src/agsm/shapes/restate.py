"""Other true captions of a training scene: the caption variety real image-text data has and ShapesWorld lacks.

Pretraining on one exact, complete caption per scene makes two properties of the tiny models unlike a real
base model's (docs/study.md, item 2):
- colour attribution is too easy: every two-object caption names both colours, so binding a colour to its
  shape is supervised on every image; real captions often leave attributes out;
- the relation word carries no signal the model must read: a position caption always names the objects in
  one fixed order, so the model's own reward cannot tell "A left of B" from "A right of B" (item 1).
Two restatements, each still true of the scene (the grammar parses it and the verifier would pass it):
- `inverse_relation`: "A left of B" -> "B right of A", the same fact with the other relation word;
- `drop_colors`: "a red circle and a blue square" -> "a circle and a blue square" (one or both colours left out).
"""
from __future__ import annotations

import random

from .grammar import parse_prompt, to_prompt
from .requirements import ObjectSpec, Requirements

INVERSE_RELATION = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}


def inverse_relation(prompt: str) -> str | None:
    """The same spatial fact stated from the other object, or None when `prompt` has no relation."""
    req = parse_prompt(prompt)
    if req.relation is None:
        return None
    first, second = req.objects
    return to_prompt(Requirements(req.category, (second, first), relation=INVERSE_RELATION[req.relation]))


def drop_colors(prompt: str, rng: random.Random) -> str | None:
    """A two-object caption with the colour of one object, the other or both left out (chosen by `rng`).

    None for captions that are not two named objects without a relation, or that name no colour.
    """
    req = parse_prompt(prompt)
    if len(req.objects) != 2 or req.relation is not None or req.count is not None:
        return None
    coloured = [i for i, o in enumerate(req.objects) if o.color]
    if not coloured:
        return None
    drop = rng.choice([[i] for i in coloured] + ([coloured] if len(coloured) == 2 else []))
    objects = tuple(ObjectSpec(o.shape, None if i in drop else o.color) for i, o in enumerate(req.objects))
    category = "two_objects"  # the parser calls any pair missing a colour two_objects
    return to_prompt(Requirements(category, objects))


def restatement(prompt: str, rng: random.Random) -> str | None:
    """The one restatement that applies to `prompt` (relation or colours), or None."""
    return inverse_relation(prompt) or drop_colors(prompt, rng)
