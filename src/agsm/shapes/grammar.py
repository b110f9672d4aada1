"""The caption grammar: scenes -> captions and prompts -> Requirements.

Grammar (lower case; colour optional wherever an object is named; "an" before "orange"):
  object    := ("a" | "an") [colour] shape
  single    := object                                   e.g. "a circle", "a red circle"
  two       := object "and" object                      e.g. "a red circle and a blue square"
  counting  := number [colour] shape-plural             e.g. "three green triangles" ("one circle")
  position  := object relation object                   e.g. "a red circle to the left of a blue square"
  relation  := "to the left of" | "to the right of" | "above" | "below"
The category is inferred from the form: a coloured single object is `colors`, an uncoloured one
`single_object`; two objects of different shapes and different colours are `color_attr`,
other pairs `two_objects`.
"""

from __future__ import annotations

from .requirements import ObjectSpec, Requirements
from .spec import COLORS, NUMBER_WORDS, POSITION_MARGIN, RELATIONS, SHAPES, Scene, ShapeObject

_RELATION_WORDS = {words: name for name, words in RELATIONS.items()}
_PLURALS = {shape + "s": shape for shape in SHAPES}

GRAMMAR_HELP = (
    "accepted forms: 'a [colour] shape', 'a [colour] shape and a [colour] shape', "
    "'NUMBER [colour] shapes', 'a [colour] shape RELATION a [colour] shape'; "
    f"colour in {list(COLORS)}, shape in {list(SHAPES)}, NUMBER in {list(NUMBER_WORDS)}, "
    f"RELATION in {list(RELATIONS.values())}"
)


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def object_phrase(shape: str, color: str | None) -> str:
    words = f"{color} {shape}" if color else shape
    return f"{_article(words)} {words}"


def relation_between(a: ShapeObject, b: ShapeObject) -> str | None:
    """The relation of a to b along the axis where their centres differ most, if beyond the margin."""
    dx = a.center[0] - b.center[0]
    dy = a.center[1] - b.center[1]
    if max(abs(dx), abs(dy)) <= POSITION_MARGIN:
        return None
    if abs(dx) >= abs(dy):
        return "left_of" if dx < 0 else "right_of"
    return "above" if dy < 0 else "below"


def caption(scene: Scene, category: str, *, mention_color: bool = True) -> str:
    """A true caption of `scene` in the form of `category`.

    `mention_color` only matters where the grammar makes colour optional (single_object, counting).
    """
    objs = scene.objects
    if category in ("single_object", "colors"):
        _need(len(objs) == 1, category, "exactly one object", scene)
        color = objs[0].color if (mention_color or category == "colors") else None
        return object_phrase(objs[0].shape, color)
    if category in ("two_objects", "color_attr"):
        _need(len(objs) == 2, category, "exactly two objects", scene)
        a, b = objs
        if category == "color_attr":
            _need(a.shape != b.shape and a.color != b.color, category, "different shapes and colours", scene)
        return f"{object_phrase(a.shape, a.color)} and {object_phrase(b.shape, b.color)}"
    if category == "counting":
        shapes = {o.shape for o in objs}
        _need(len(shapes) == 1, category, "objects of a single shape", scene)
        colors = {o.color for o in objs}
        color = f"{objs[0].color} " if (mention_color and len(colors) == 1) else ""
        noun = objs[0].shape + ("" if len(objs) == 1 else "s")
        return f"{NUMBER_WORDS[len(objs) - 1]} {color}{noun}"
    if category == "position":
        _need(len(objs) == 2, category, "exactly two objects", scene)
        a, b = objs
        rel = relation_between(a, b)
        _need(rel is not None, category, f"centres more than {POSITION_MARGIN} px apart", scene)
        return f"{object_phrase(a.shape, a.color)} {RELATIONS[rel]} {object_phrase(b.shape, b.color)}"
    raise ValueError(f"unknown category {category!r}; use one of the categories in agsm.shapes.spec.CATEGORIES")


def _need(ok: bool, category: str, what: str, scene: Scene) -> None:
    if not ok:
        raise ValueError(f"a {category} caption needs {what}; got scene {scene}")


def to_prompt(req: Requirements) -> str:
    """The grammar's text for `req` (the inverse of parse_prompt)."""
    objs = [object_phrase(o.shape, o.color) for o in req.objects]
    if req.count is not None:
        spec = req.objects[0]
        noun = spec.shape + ("" if req.count == 1 else "s")
        return f"{NUMBER_WORDS[req.count - 1]} {spec.color + ' ' if spec.color else ''}{noun}"
    if req.relation is not None:
        return f"{objs[0]} {RELATIONS[req.relation]} {objs[1]}"
    return " and ".join(objs)


def parse_prompt(text: str) -> Requirements:
    """Parse a prompt of the grammar above; raises ValueError naming the text and the accepted forms."""
    words = text.strip().lower().rstrip(".").split()
    if not words:
        raise _error(text, "it is empty")
    if words[0] in NUMBER_WORDS:
        return _parse_counting(text, words)
    first, i = _parse_object(text, words, 0)
    if i == len(words):
        category = "colors" if first.color else "single_object"
        return Requirements(category, (first,))
    if words[i] == "and":
        second, j = _parse_object(text, words, i + 1)
        _expect_end(text, words, j)
        differ = first.color and second.color and first.color != second.color and first.shape != second.shape
        return Requirements("color_attr" if differ else "two_objects", (first, second))
    for phrase, name in _RELATION_WORDS.items():
        n = len(phrase.split())
        if " ".join(words[i : i + n]) == phrase:
            second, j = _parse_object(text, words, i + n)
            _expect_end(text, words, j)
            return Requirements("position", (first, second), relation=name)
    raise _error(text, f"expected 'and' or a relation after the first object, found {words[i]!r}")


def _parse_object(text: str, words: list[str], i: int) -> tuple[ObjectSpec, int]:
    if i >= len(words) or words[i] not in ("a", "an"):
        found = words[i] if i < len(words) else "the end"
        raise _error(text, f"expected 'a' or 'an' to start an object, found {found!r}")
    i += 1
    color = None
    if i < len(words) and words[i] in COLORS:
        color, i = words[i], i + 1
    if i >= len(words) or words[i] not in SHAPES:
        found = words[i] if i < len(words) else "the end"
        raise _error(text, f"expected a shape, found {found!r}")
    return ObjectSpec(words[i], color), i + 1


def _parse_counting(text: str, words: list[str]) -> Requirements:
    count = NUMBER_WORDS.index(words[0]) + 1
    i = 1
    color = None
    if i < len(words) and words[i] in COLORS:
        color, i = words[i], i + 1
    if i >= len(words):
        raise _error(text, "expected a shape after the number")
    noun = words[i]
    shape = noun if count == 1 else _PLURALS.get(noun)
    if shape not in SHAPES:
        form = "a singular shape after 'one'" if count == 1 else "a plural shape (circles, squares, triangles)"
        raise _error(text, f"expected {form}, found {noun!r}")
    _expect_end(text, words, i + 1)
    return Requirements("counting", (ObjectSpec(shape, color),), count=count)


def _expect_end(text: str, words: list[str], i: int) -> None:
    if i != len(words):
        raise _error(text, f"unexpected words after a complete prompt: {' '.join(words[i:])!r}")


def _error(text: str, detail: str) -> ValueError:
    return ValueError(f"prompt {text!r} is outside the ShapesWorld grammar: {detail}; {GRAMMAR_HELP}")
