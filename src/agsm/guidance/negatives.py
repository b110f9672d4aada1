"""The negative captions of alignment guidance: for each prompt, K-1 texts that the rule contrasts it with.

- `inbatch`: K-1 other prompts of the prompt set (AGSM's in-batch negatives: other images' captions);
- `hard`: K-1 one-attribute perturbations of the prompt (agsm.data.perturb: the ShapesWorld grammar for suite
  prompts, the word rules for real prompts: one colour, object, number or spatial word changed).

Each prompt's draw is seeded by (seed, the prompt's text), so a prompt gets the same negatives whatever else is in
its batch or its run, and a resumed evaluation sees the ones it started with. A negative is never the prompt's
own text. K = 4 by default: the method's one positive to three negatives.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence

from ..data.perturb import distinct_perturbations

log = logging.getLogger("agsm.guidance")

NEGATIVE_KINDS = ("hard", "inbatch")
DEFAULT_K = 4

# What align_guidance accepts: one list per prompt of a pipeline call, a prompt -> negatives table, or a function
# of the call's prompts.
NegativeSpec = Sequence[Sequence[str]] | Mapping[str, Sequence[str]] | Callable[[list[str]], list[list[str]]]


def _same_text(a: str, b: str) -> bool:
    return a.strip().lower().rstrip(".") == b.strip().lower().rstrip(".")


def _rng(seed: int, prompt: str) -> random.Random:
    # a string seed is hashed with SHA-512 by random.Random: the same draw in every process (no PYTHONHASHSEED)
    return random.Random(f"{seed}\x00{prompt}")


def hard_negatives(prompts: Sequence[str], count: int = DEFAULT_K - 1, seed: int = 0) -> dict[str, list[str]]:
    """prompt -> up to `count` distinct one-attribute perturbations. A prompt with fewer gets fewer; one with no
    colour, object, number or spatial word gets none (the rule then leaves it unguided: D = 0), with a warning."""
    _check_count(count)
    table = {}
    for prompt in dict.fromkeys(prompts):
        found = [p for p in distinct_perturbations(prompt, count, _rng(seed, prompt)) if not _same_text(p, prompt)]
        if not found:
            log.warning("alignment guidance: %r has no colour, object, number or spatial word to change, so it gets "
                        "no hard negatives and is drawn unguided; use in-batch negatives to guide it", prompt)
        table[prompt] = found
    return table


def inbatch_negatives(prompts: Sequence[str], count: int = DEFAULT_K - 1, seed: int = 0,
                      prompt_set: Sequence[str] | None = None) -> dict[str, list[str]]:
    """prompt -> `count` other texts of `prompt_set` (default: `prompts` themselves), drawn without replacement."""
    _check_count(count)
    pool = list(dict.fromkeys(prompt_set if prompt_set is not None else prompts))
    table = {}
    for prompt in dict.fromkeys(prompts):
        others = [p for p in pool if not _same_text(p, prompt)]
        if len(others) < count:
            raise ValueError(f"in-batch negatives need {count} other prompts for each prompt, but the prompt set has "
                             f"{len(others)} besides {prompt!r}; give more prompts, a smaller K, or hard negatives")
        table[prompt] = _rng(seed, prompt).sample(others, count)
    return table


def make_negatives(kind: str, prompts: Sequence[str], k: int = DEFAULT_K, seed: int = 0,
                   prompt_set: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The `kind` (hard | inbatch) negatives of every prompt, K - 1 each."""
    if kind not in NEGATIVE_KINDS:
        raise ValueError(f"negatives {kind!r} is not one of {', '.join(NEGATIVE_KINDS)}")
    if k < 2:
        raise ValueError(f"K {k} must be >= 2: the prompt and at least one negative caption")
    if kind == "hard":
        return hard_negatives(prompts, k - 1, seed)
    return inbatch_negatives(prompts, k - 1, seed, prompt_set)


def negatives_for_call(spec: NegativeSpec, prompts: list[str]) -> list[list[str]]:
    """One list of negatives per prompt of a pipeline call, from any form align_guidance accepts."""
    if callable(spec):
        found = [list(n) for n in spec(prompts)]
    elif isinstance(spec, Mapping):
        missing = [p for p in prompts if p not in spec]
        if missing:
            raise ValueError(f"the negatives table has no entry for the prompt {missing[0]!r} "
                             f"({len(missing)} of {len(prompts)} prompts missing); build it from these prompts, e.g. "
                             "agsm.guidance.make_negatives('hard', prompts)")
        found = [list(spec[p]) for p in prompts]
    else:
        if isinstance(spec, str) or any(isinstance(n, str) for n in spec):
            raise ValueError("negatives must hold one list of texts per prompt (e.g. [['a blue circle'], ...]), "
                             f"not texts: got {spec!r:.80}")
        found = [list(n) for n in spec]
    if len(found) != len(prompts):
        raise ValueError(f"got {len(found)} lists of negatives for a pipeline call with {len(prompts)} prompts; "
                         "give one list per prompt, in the prompts' order (or a prompt -> negatives table)")
    for prompt, negatives in zip(prompts, found):
        if any(not isinstance(n, str) for n in negatives):
            raise ValueError(f"the negatives of {prompt!r} must be texts, got {negatives!r}")
    return found


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError(f"the number of negatives {count} must be >= 1 (K - 1, K >= 2)")
