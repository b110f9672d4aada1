"""The exact judge: does an image show what its prompt asks for? GenEval rules on detected objects.

- single object, colours, two objects, colour attribution: each named object is present (with its
  colour where named); a name given twice needs two such objects;
- counting: exactly N objects of the named kind;
- position: some object of the first kind has its centre more than POSITION_MARGIN px beyond some
  object of the second kind in the named direction (relations are not exclusive: an object both
  left of and above another satisfies both);
objects the prompt does not name are allowed, as in GenEval.
`judge` works on anything with .shape, .color and .center, so it also scores ground-truth scenes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from .detect import Detection, detect
from .grammar import parse_prompt
from .requirements import ObjectSpec, Requirements
from .spec import CATEGORIES, POSITION_MARGIN, RELATIONS


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
    detections: list[Detection]
    category: str
    requirements: Requirements


def relation_holds(a: tuple[float, float], b: tuple[float, float], relation: str) -> bool:
    """Whether centre a is `relation` to centre b, beyond the margin (image y grows downwards)."""
    dx, dy = a[0] - b[0], a[1] - b[1]
    return {
        "left_of": dx < -POSITION_MARGIN,
        "right_of": dx > POSITION_MARGIN,
        "above": dy < -POSITION_MARGIN,
        "below": dy > POSITION_MARGIN,
    }[relation]


def _count(objects: Sequence[Any], spec: ObjectSpec) -> int:
    return sum(spec.matches(o) for o in objects)


def judge(req: Requirements, objects: Sequence[Any]) -> tuple[bool, str]:
    """(correct, reason) for `objects` against `req`."""
    if req.count is not None:
        spec = req.objects[0]
        n = _count(objects, spec)
        ok = n == req.count
        return ok, f"found {n} {spec.describe()}(s), need exactly {req.count}"
    if req.relation is not None:
        spec_a, spec_b = req.objects
        found_a = [o for o in objects if spec_a.matches(o)]
        found_b = [o for o in objects if spec_b.matches(o)]
        if not found_a or not found_b:
            missing = [s.describe() for s, f in ((spec_a, found_a), (spec_b, found_b)) if not f]
            return False, f"missing {' and '.join(missing)}"
        ok = any(a is not b and relation_holds(a.center, b.center, req.relation) for a in found_a for b in found_b)
        words = RELATIONS[req.relation]
        return ok, f"{spec_a.describe()} is{'' if ok else ' not'} {words} {spec_b.describe()}"
    need = Counter(req.objects)
    short = [f"{spec.describe()} ({_count(objects, spec)}/{k})" for spec, k in need.items() if _count(objects, spec) < k]
    if short:
        return False, "missing " + ", ".join(short)
    return True, "all named objects present: " + ", ".join(s.describe() for s in req.objects)


def verify(image, prompt: str, category: str | None = None) -> Verdict:
    """Judge a PIL image or HxWx3 uint8 array against a grammar prompt.

    `category` labels the verdict (e.g. a suite line's category); by default it is inferred from the prompt.
    """
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"category {category!r} is not one of {CATEGORIES}")
    req = parse_prompt(prompt)
    found = detect(image)
    ok, reason = judge(req, found)
    return Verdict(ok, reason, found, category or req.category, req)
