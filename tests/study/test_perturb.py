"""Hard negative captions: exactly one attribute changes, the result stays in the grammar, free text keeps its form."""
import random

import pytest

from agsm.data.perturb import perturb_caption, perturb_shapes, perturb_text
from agsm.shapes.grammar import parse_prompt
from agsm.shapes.scenes import sample_many


def _differences(a, b):
    """Fields of two parsed prompts that differ."""
    out = []
    if a.count != b.count:
        out.append("count")
    if a.relation != b.relation:
        out.append("relation")
    for x, y in zip(a.objects, b.objects):
        if x.color != y.color:
            out.append("color")
        if x.shape != y.shape:
            out.append("shape")
    return out


def test_grammar_perturbations_change_exactly_the_named_attribute():
    rng = random.Random(0)
    seen = set()
    for smp in sample_many(300, seed=3):
        result = perturb_shapes(smp.prompt, rng)
        assert result is not None, smp.prompt  # every ShapesWorld caption has a shape to change
        text, kind = result
        assert text != smp.prompt
        assert _differences(parse_prompt(smp.prompt), parse_prompt(text)) == [kind], (smp.prompt, text)
        seen.add(kind)
    assert seen == {"color", "shape", "count", "relation"}


@pytest.mark.parametrize("kind,caption", [("count", "three circles"), ("relation", "a red square above a blue circle"),
                                          ("color", "a green triangle")])
def test_kinds_can_be_chosen(kind, caption):
    rng = random.Random(1)
    for _ in range(20):
        text, got = perturb_shapes(caption, rng, kinds=(kind,))
        assert got == kind and text != caption


def test_relation_kind_on_a_caption_without_relation_gives_none():
    assert perturb_shapes("a red circle", random.Random(0), kinds=("relation",)) is None
    assert perturb_shapes("a dog on a sofa", random.Random(0)) is None  # outside the grammar


def test_free_text_rules():
    rng = random.Random(0)
    text, kind = perturb_text("Two dogs to the left of a red car.", rng, kinds=("count",))
    assert kind == "count" and text.endswith("dogs to the left of a red car.") and not text.startswith("Two")
    text, kind = perturb_text("Two dogs to the left of a red car.", rng, kinds=("relation",))
    assert text == "Two dogs to the right of a red car."
    text, kind = perturb_text("an apple on a table", random.Random(2), kinds=("shape",))
    assert kind == "shape" and len(text.split()) == 5
    assert text.split()[0] == ("an" if text.split()[1][0] in "aeiou" else "a")  # article follows the new noun
    text, _ = perturb_text("an orange cat", rng, kinds=("color",))
    assert text.split()[2] == "cat" and text.split()[1] != "orange"  # 'orange' before a noun is a colour
    assert perturb_text("a sunny day", rng) is None
    assert perturb_caption("a sunny day", rng) is None


def test_perturbation_is_reproducible_from_the_seed():
    captions = [s.prompt for s in sample_many(30, seed=5)]
    first = [perturb_caption(c, random.Random(9)) for c in captions]
    assert first == [perturb_caption(c, random.Random(9)) for c in captions]
