"""Hard negative captions: the true caption with exactly one attribute changed.

AGSM's in-batch negatives are other images' captions, which a model tells apart from the own caption by
content it already follows (a different scene altogether). A caption that differs in one colour, shape,
count or spatial relation asks the model about the attribute it gets wrong. Two perturbers share one
signature, `perturb(caption, rng, kinds) -> (new_caption, kind) | None`:

- `perturb_shapes`: through the ShapesWorld grammar (parse -> change one field of the Requirements ->
  print), so every result is a valid, different, judgeable prompt;
- `perturb_text`: word rules for free-text captions (COCO-style): swap one colour word, number word,
  spatial word or object noun for another of its class, keeping articles and plurals right.

`perturb_caption` tries the grammar first and falls back to the word rules.
"""
from __future__ import annotations

import random
import re

KINDS = ("color", "shape", "count", "relation")

# Word classes for free text. Object nouns: COCO's 80 categories (single-word forms) with simple plurals.
TEXT_COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "black", "white", "brown", "pink", "gray",
               "grey")
TEXT_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Each spatial phrase maps to its opposite (a swap is the hardest relation change: same words, other meaning).
TEXT_RELATIONS = {"left": "right", "right": "left", "above": "below", "below": "above", "under": "over",
                  "over": "under", "top": "bottom", "bottom": "top", "behind": "in front of",
                  "in front of": "behind", "inside": "outside", "outside": "inside"}
TEXT_NOUNS = ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "bench",
              "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
              "umbrella", "handbag", "tie", "suitcase", "frisbee", "kite", "skateboard", "surfboard", "bottle",
              "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
              "carrot", "pizza", "donut", "cake", "chair", "couch", "bed", "table", "toilet", "laptop", "mouse",
              "remote", "keyboard", "phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
              "clock", "vase", "toothbrush", "circle", "square", "triangle")
_IRREGULAR_PLURALS = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "bus": "buses",
                      "couch": "couches", "sandwich": "sandwiches", "toothbrush": "toothbrushes",
                      "scissors": "scissors", "glass": "glasses", "box": "boxes", "peach": "peaches"}


def _plural(noun: str) -> str:
    return _IRREGULAR_PLURALS.get(noun, noun + "s")


_NOUN_FORMS = {**{n: (n, False) for n in TEXT_NOUNS}, **{_plural(n): (n, True) for n in TEXT_NOUNS}}


def perturb_shapes(caption: str, rng: random.Random, kinds=KINDS):
    """A ShapesWorld prompt with one attribute changed, and which; None when the caption is outside the grammar
    or none of `kinds` applies to it."""
    from ..shapes.grammar import parse_prompt, to_prompt
    from ..shapes.requirements import ObjectSpec, Requirements
    from ..shapes.spec import COLORS, NUMBER_WORDS, RELATIONS, SHAPES

    try:
        req = parse_prompt(caption)
    except ValueError:
        return None
    options = []
    for i, obj in enumerate(req.objects):
        if "color" in kinds and obj.color is not None:
            options += [("color", i, ObjectSpec(obj.shape, c)) for c in COLORS if c != obj.color]
        if "shape" in kinds:
            options += [("shape", i, ObjectSpec(s, obj.color)) for s in SHAPES if s != obj.shape]
    if "count" in kinds and req.count is not None:
        options += [("count", n, None) for n in range(1, len(NUMBER_WORDS) + 1) if n != req.count]
    if "relation" in kinds and req.relation is not None:
        options += [("relation", r, None) for r in RELATIONS if r != req.relation]
    while options:
        kind, where, spec = options.pop(rng.randrange(len(options)))
        if kind in ("color", "shape"):
            objects = tuple(spec if j == where else o for j, o in enumerate(req.objects))
            new = Requirements(req.category, objects, req.count, req.relation)
        elif kind == "count":
            new = Requirements(req.category, req.objects, where, None)
        else:
            new = Requirements(req.category, req.objects, None, where)
        text = to_prompt(new)
        if text != caption.strip().lower().rstrip("."):  # e.g. "a red circle and a red circle" stays distinct
            return text, kind
    return None


def perturb_text(caption: str, rng: random.Random, kinds=KINDS):
    """A free-text caption with one colour, object noun, number or spatial word changed, and which; None if the
    caption has no word of the asked kinds."""
    words = caption.split()
    lowered = [re.sub(r"[^a-z]", "", w.lower()) for w in words]
    options = []
    for i, w in enumerate(lowered):
        follows_noun = i + 1 < len(lowered) and lowered[i + 1] in _NOUN_FORMS
        if "color" in kinds and w in TEXT_COLORS and not (w == "orange" and not follows_noun):
            options.append(("color", i))
        if "shape" in kinds and w in _NOUN_FORMS and not (w == "orange" and follows_noun):
            options.append(("shape", i))
        if "count" in kinds and w in TEXT_NUMBERS:
            options.append(("count", i))
        if "relation" in kinds and (w in TEXT_RELATIONS or " ".join(lowered[i:i + 3]) == "in front of"):
            options.append(("relation", i))
    if not options:
        return None
    kind, i = options[rng.randrange(len(options))]
    new = list(words)
    if kind == "color":
        new[i] = _same_case(words[i], rng.choice([c for c in TEXT_COLORS[:10] if c != lowered[i]]))
    elif kind == "shape":
        base, plural = _NOUN_FORMS[lowered[i]]
        other = rng.choice([n for n in TEXT_NOUNS if n != base])
        new[i] = _same_case(words[i], _plural(other) if plural else other)
    elif kind == "count":
        new[i] = _same_case(words[i], rng.choice([n for n in TEXT_NUMBERS[:5] if n != lowered[i]]))
    else:
        phrase = "in front of" if " ".join(lowered[i:i + 3]) == "in front of" else lowered[i]
        span = len(phrase.split())
        new[i:i + span] = TEXT_RELATIONS[phrase].split()
    text = " ".join(new)
    return _fix_articles(text), kind


def perturb_caption(caption: str, rng: random.Random, kinds=KINDS):
    """The grammar's perturbation for ShapesWorld prompts, the word rules for anything else."""
    return perturb_shapes(caption, rng, kinds) or perturb_text(caption, rng, kinds)


def distinct_perturbations(caption: str, n: int, rng: random.Random, kinds=KINDS) -> list[str]:
    """Up to n different one-attribute perturbations of `caption` (fewer where the caption has fewer)."""
    found: list[str] = []
    for _ in range(4 * n):  # a few tries: short captions ("a circle") have only a handful of perturbations
        changed = perturb_caption(caption, rng, kinds)
        if changed is not None and changed[0] not in found:
            found.append(changed[0])
        if len(found) == n:
            break
    return found


def _same_case(original: str, word: str) -> str:
    """Keep a leading capital and trailing punctuation of the word being replaced."""
    core = re.match(r"^([A-Za-z]*)(.*)$", original)
    head, tail = core.group(1), core.group(2)
    return (word.capitalize() if head[:1].isupper() else word) + tail


def _fix_articles(text: str) -> str:
    """'a' before a vowel sound becomes 'an' and back, after a word swap."""
    def fix(match):
        article, word = match.group(1), match.group(2)
        want = "an" if word[0].lower() in "aeiou" else "a"
        return (want.capitalize() if article[0].isupper() else want) + " " + word
    return re.sub(r"\b(an?|An?)\s+(\w+)", fix, text)
