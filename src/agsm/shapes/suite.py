"""The fixed evaluation suite: 50 prompts per GenEval category, built from a seed and shipped as JSONL.

Regenerate with `python scripts/make_eval_suite.py` (seed 0); the output is byte-identical.
Prompts are spread evenly over the grammar's combinations:
- single_object: half "a {shape}", half "a {colour} {shape}" (only 21 distinct prompts exist,
  so they repeat; each line has its own `seed` so repeats give different images);
- colors: "a {colour} {shape}", cycling over all 18 combinations;
- counting: two to four, with and without colour, 50 of the 63 distinct prompts;
- two_objects: pairs sharing a shape or a colour, 50 of the 63 distinct pairs;
- color_attr: different shapes in different colours, 50 of the 90 distinct pairs;
- position: 50 distinct ordered pairs, the four relations in turn.
Held out: the compositions of the position and color_attr lines (`held_out_keys`, order-free, so
"B right of A" counts as "A left of B") never appear in generated training sets, so those
categories measure generalisation to unseen compositions rather than recall. Single objects,
colours, counts and attribute-sharing pairs are too few to hold out and do overlap with training.
"""

from __future__ import annotations

import itertools
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

from .grammar import object_phrase, parse_prompt
from .requirements import Requirements, requirement_key
from .spec import CATEGORIES, COLORS, NUMBER_WORDS, RELATIONS, SHAPES

SUITE_SEED = 0
PER_CATEGORY = 50
HELD_OUT_CATEGORIES = ("position", "color_attr")

_KINDS = [(s, c) for s in SHAPES for c in COLORS]


def _cycle(items: list, n: int, rng: random.Random) -> list:
    """n items, each full pass over `items` shuffled anew, so coverage stays even."""
    out: list = []
    while len(out) < n:
        out.extend(rng.sample(items, len(items)))
    return out[:n]


def _pair_text(a: tuple[str, str], b: tuple[str, str]) -> str:
    return f"{object_phrase(*a)} and {object_phrase(*b)}"


def _prompts(category: str, n: int, rng: random.Random) -> list[str]:
    if category == "single_object":
        bare = _cycle([object_phrase(s, None) for s in SHAPES], n // 2, rng)
        return bare + _cycle([object_phrase(s, c) for s, c in _KINDS], n - n // 2, rng)
    if category == "colors":
        return _cycle([object_phrase(s, c) for s, c in _KINDS], n, rng)
    if category == "counting":
        combos = [
            f"{NUMBER_WORDS[k - 1]} {c + ' ' if c else ''}{s}s"
            for k in (2, 3, 4) for s in SHAPES for c in (None, *COLORS)
        ]
        return rng.sample(combos, n)
    if category in ("two_objects", "color_attr"):
        pairs = [
            (a, b) for a, b in itertools.combinations(_KINDS, 2)
            if ((a[0] != b[0]) and (a[1] != b[1])) == (category == "color_attr")
        ]
        chosen = rng.sample(pairs, n)
        return [_pair_text(*(p if rng.random() < 0.5 else p[::-1])) for p in chosen]
    # position: distinct compositions, relations in turn
    out, seen = [], set()
    relations = list(RELATIONS)
    while len(out) < n:
        a, b = rng.sample(_KINDS, 2)
        text = f"{object_phrase(*a)} {RELATIONS[relations[len(out) % 4]]} {object_phrase(*b)}"
        key = requirement_key(parse_prompt(text))
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out


def build_eval_suite(seed: int = SUITE_SEED, per_category: int = PER_CATEGORY) -> list[dict[str, Any]]:
    """Suite lines: prompt, category, parsed requirements, and a per-line generation seed."""
    rng = random.Random(seed)
    lines = []
    for category in CATEGORIES:
        for text in _prompts(category, per_category, rng):
            req = parse_prompt(text)
            req = Requirements(category, req.objects, req.count, req.relation)  # the suite's label wins
            lines.append({"prompt": text, "category": category, "requirements": req.to_dict()})
    for i, line in enumerate(lines):
        line["seed"] = i
    return lines


def write_eval_suite(path: str | Path, seed: int = SUITE_SEED, per_category: int = PER_CATEGORY) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for line in build_eval_suite(seed, per_category):
            f.write(json.dumps(line) + "\n")
    return path


def default_suite_path() -> Path:
    return Path(str(resources.files("agsm.shapes") / "data" / "eval_suite.jsonl"))


def load_eval_suite(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The shipped suite (or the JSONL at `path`), one dict per prompt."""
    path = Path(path) if path else default_suite_path()
    if not path.exists():
        raise FileNotFoundError(f"evaluation suite {path} not found; create it with `python scripts/make_eval_suite.py`")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def held_out_keys(path: str | Path | None = None) -> frozenset:
    """Requirement keys of the suite's held-out compositions, which training sets must not contain."""
    return frozenset(
        requirement_key(Requirements.from_dict(line["requirements"]))
        for line in load_eval_suite(path)
        if line["category"] in HELD_OUT_CATEGORIES
    )
