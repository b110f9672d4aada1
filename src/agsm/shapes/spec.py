"""The ShapesWorld specification: canvas, palette, shapes, sizes, and the scene dataclasses.

Everything else in `agsm.shapes` (sampling, rendering, captions, the judge) reads its numbers
from here, so the world is defined in one place (see docs/DESIGN "ShapesWorld").
"""

from __future__ import annotations

from dataclasses import dataclass

CANVAS = 64
BACKGROUND = (255, 255, 255)

# Name -> RGB, in a fixed order that every sampler and the judge share.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 180),
    "orange": (245, 140, 20),
}
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = ("one", "two", "three", "four")

MIN_SIZE = 10  # bounding-box side in pixels, inclusive
MAX_SIZE = 16
MIN_GAP = 2  # empty pixels required between two bounding boxes
MAX_OBJECTS = 4

# Relation name -> the words used in captions.
RELATIONS: dict[str, str] = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
}

# Judging "A left of B": A's centre x must be more than this many pixels below B's (likewise for
# the other relations, on their axis). A fifth of the smallest object: offsets smaller than that
# read as "level with", not "beside".
POSITION_MARGIN = 3.0

CATEGORIES = ("single_object", "two_objects", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class ShapeObject:
    """One solid shape; its axis-aligned bounding box is `size` x `size` pixels at (x, y)."""

    shape: str
    color: str
    x: int
    y: int
    size: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} is not one of {SHAPES}")
        if self.color not in COLORS:
            raise ValueError(f"color {self.color!r} is not one of {tuple(COLORS)}")
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ValueError(f"size {self.size} is outside [{MIN_SIZE}, {MAX_SIZE}]")
        if self.x < 0 or self.y < 0 or self.x + self.size > CANVAS or self.y + self.size > CANVAS:
            raise ValueError(
                f"object box ({self.x}, {self.y}, size {self.size}) is not inside the {CANVAS}x{CANVAS} canvas"
            )

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) with x1, y1 exclusive."""
        return (self.x, self.y, self.x + self.size, self.y + self.size)

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the bounding box, the point GenEval-style position judging compares."""
        return (self.x + self.size / 2, self.y + self.size / 2)


def box_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Empty pixels between two boxes along the axis where they are furthest apart (< 0: overlap)."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3])


@dataclass(frozen=True)
class Scene:
    """A set of non-overlapping objects on the white canvas."""

    objects: tuple[ShapeObject, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects, got {len(self.objects)}")
        for i, a in enumerate(self.objects):
            for b in self.objects[i + 1 :]:
                if box_gap(a.box, b.box) < MIN_GAP:
                    raise ValueError(f"objects {a} and {b} are closer than {MIN_GAP} px")
