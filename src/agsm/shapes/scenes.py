"""Seeded scene sampling, one sampler per GenEval category, each returning a scene and a true caption.

Scenes hold exactly what their caption names (no distractors), so a model trained on them learns
to draw what it is asked and nothing else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .grammar import caption, parse_prompt, relation_between
from .requirements import requirement_key
from .spec import CANVAS, CATEGORIES, COLORS, MAX_SIZE, MIN_GAP, MIN_SIZE, SHAPES, Scene, ShapeObject, box_gap

# Position scenes keep their centres at least this far apart on the captioned axis, well above
# the judging margin, so the caption stays true after blur and an imperfect redraw.
POSITION_MIN_OFFSET = 8.0
_MAX_TRIES = 1000


@dataclass(frozen=True)
class Sample:
    scene: Scene
    prompt: str
    category: str


def place(kinds: list[tuple[str, str]], rng: random.Random) -> Scene:
    """Random sizes and positions for (shape, colour) pairs with no overlap and >= MIN_GAP px between boxes."""
    for _ in range(_MAX_TRIES):
        objects: list[ShapeObject] = []
        for shape, color in kinds:
            size = rng.randint(MIN_SIZE, MAX_SIZE)
            for _ in range(50):
                obj = ShapeObject(shape, color, rng.randint(0, CANVAS - size), rng.randint(0, CANVAS - size), size)
                if all(box_gap(obj.box, o.box) >= MIN_GAP for o in objects):
                    objects.append(obj)
                    break
            else:
                break
        if len(objects) == len(kinds):
            return Scene(tuple(objects))
    raise RuntimeError(f"could not place {kinds} on the canvas after {_MAX_TRIES} tries")


def _kind(rng: random.Random) -> tuple[str, str]:
    return rng.choice(SHAPES), rng.choice(list(COLORS))


def _pair(rng: random.Random, category: str) -> list[tuple[str, str]]:
    colors = list(COLORS)
    if category == "color_attr":  # different shapes and different colours
        s1, s2 = rng.sample(SHAPES, 2)
        c1, c2 = rng.sample(colors, 2)
    elif category == "two_objects":  # the pair shares exactly one attribute (the rest is color_attr)
        if rng.random() < 0.5:
            s1 = s2 = rng.choice(SHAPES)
            c1, c2 = rng.sample(colors, 2)
        else:
            s1, s2 = rng.sample(SHAPES, 2)
            c1 = c2 = rng.choice(colors)
    else:  # position: any two different objects
        (s1, c1), (s2, c2) = _kind(rng), _kind(rng)
        while (s2, c2) == (s1, c1):
            s2, c2 = _kind(rng)
    return [(s1, c1), (s2, c2)]


def sample(category: str, rng: random.Random, exclude: frozenset = frozenset()) -> Sample:
    """One scene of `category` with a true caption whose requirement key is not in `exclude`."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; use one of {CATEGORIES}")
    for _ in range(_MAX_TRIES):
        smp = _sample_once(category, rng)
        if not exclude or requirement_key(parse_prompt(smp.prompt)) not in exclude:
            return smp
    raise RuntimeError(f"every {category} sample in {_MAX_TRIES} tries was excluded; the exclusion set is too large")


def _sample_once(category: str, rng: random.Random) -> Sample:
    if category in ("single_object", "colors"):
        scene = place([_kind(rng)], rng)
        text = caption(scene, category, mention_color=category == "colors" or rng.random() < 0.5)
    elif category == "counting":
        n = rng.randint(1, 4)
        shape = rng.choice(SHAPES)
        same_color = rng.random() < 0.5
        color = rng.choice(list(COLORS))
        scene = place([(shape, color if same_color else rng.choice(list(COLORS))) for _ in range(n)], rng)
        text = caption(scene, category, mention_color=rng.random() < 0.7)
    elif category == "position":
        kinds = _pair(rng, category)
        while True:
            scene = place(kinds, rng)
            a, b = scene.objects
            offset = max(abs(a.center[0] - b.center[0]), abs(a.center[1] - b.center[1]))
            if relation_between(a, b) is not None and offset >= POSITION_MIN_OFFSET:
                break
        text = caption(scene, category)
    else:
        scene = place(_pair(rng, category), rng)
        text = caption(scene, category)
    return Sample(scene, text, category)


def sample_many(n: int, seed: int, categories: tuple[str, ...] = CATEGORIES, exclude: frozenset = frozenset()) -> list[Sample]:
    """n samples cycling through `categories` in order, reproducible from `seed`."""
    rng = random.Random(seed)
    return [sample(categories[i % len(categories)], rng, exclude) for i in range(n)]
