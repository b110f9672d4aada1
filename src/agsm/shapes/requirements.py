"""What a prompt asks for: the objects it names, an exact count, or a spatial relation.

`Requirements` is the parsed form of a caption (see grammar.py) and the input of the judge
(verify.py). It round-trips through plain dicts so the evaluation suite can store it in JSONL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spec import CATEGORIES, COLORS, RELATIONS, SHAPES


@dataclass(frozen=True)
class ObjectSpec:
    """A named object: a shape, optionally with a colour (None accepts any colour)."""

    shape: str
    color: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} is not one of {SHAPES}")
        if self.color is not None and self.color not in COLORS:
            raise ValueError(f"color {self.color!r} is not one of {tuple(COLORS)}")

    def matches(self, obj: Any) -> bool:
        """True when `obj` (anything with .shape and .color) is this kind of object."""
        return obj.shape == self.shape and (self.color is None or obj.color == self.color)

    def describe(self) -> str:
        return f"{self.color} {self.shape}" if self.color else self.shape


@dataclass(frozen=True)
class Requirements:
    """The judged content of a prompt.

    - count set: exactly `count` objects matching objects[0] (counting);
    - relation set: some objects[0] stands in `relation` to some objects[1] (position);
    - otherwise: every named object is present (single object, two objects, colours, colour attribution).
    """

    category: str
    objects: tuple[ObjectSpec, ...]
    count: int | None = None
    relation: str | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category {self.category!r} is not one of {CATEGORIES}")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"relation {self.relation!r} is not one of {tuple(RELATIONS)}")
        if self.relation is not None and len(self.objects) != 2:
            raise ValueError(f"a relation needs exactly 2 objects, got {len(self.objects)}")
        if self.count is not None and (len(self.objects) != 1 or self.count < 1):
            raise ValueError(f"a count needs one object and count >= 1, got {self.count} of {self.objects}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "objects": [{"shape": o.shape, "color": o.color} for o in self.objects],
            "count": self.count,
            "relation": self.relation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Requirements":
        return cls(
            category=data["category"],
            objects=tuple(ObjectSpec(o["shape"], o.get("color")) for o in data["objects"]),
            count=data.get("count"),
            relation=data.get("relation"),
        )


_MIRROR = {"right_of": "left_of", "below": "above"}


def requirement_key(req: Requirements) -> tuple:
    """An order-free identity: 'A and B' equals 'B and A', 'A right of B' equals 'B left of A'.

    Used to keep the evaluation suite's held-out compositions out of the training set.
    """
    specs = [(o.shape, o.color or "") for o in req.objects]
    if req.relation is not None:
        a, b = specs
        if req.relation in _MIRROR:
            return ("relation", _MIRROR[req.relation], b, a)
        return ("relation", req.relation, a, b)
    if req.count is not None:
        return ("count", req.count, specs[0])
    return ("present", tuple(sorted(specs)))
