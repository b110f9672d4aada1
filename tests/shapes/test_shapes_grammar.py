"""Caption grammar: captions parse back to requirements the scene satisfies; bad text gets a clear error."""

import pytest

from agsm.shapes.grammar import caption, parse_prompt, to_prompt
from agsm.shapes.requirements import ObjectSpec, Requirements, requirement_key
from agsm.shapes.scenes import sample_many
from agsm.shapes.spec import CATEGORIES
from agsm.shapes.verify import judge


def test_caption_parse_round_trip_on_sampled_scenes():
    for smp in sample_many(600, seed=11):
        req = parse_prompt(smp.prompt)
        assert to_prompt(req) == smp.prompt
        assert judge(req, smp.scene.objects)[0], smp.prompt
        assert Requirements.from_dict(req.to_dict()) == req
        expected = {"single_object": ("single_object", "colors")}.get(smp.category, (smp.category,))
        if smp.category == "two_objects":
            expected = ("two_objects",)
        assert req.category in expected


@pytest.mark.parametrize("text, req", [
    ("a circle", Requirements("single_object", (ObjectSpec("circle"),))),
    ("an orange square", Requirements("colors", (ObjectSpec("square", "orange"),))),
    ("three green triangles", Requirements("counting", (ObjectSpec("triangle", "green"),), count=3)),
    ("one circle", Requirements("counting", (ObjectSpec("circle"),), count=1)),
    ("a red circle and a blue square", Requirements("color_attr", (ObjectSpec("circle", "red"), ObjectSpec("square", "blue")))),
    ("a red circle and a blue circle", Requirements("two_objects", (ObjectSpec("circle", "red"), ObjectSpec("circle", "blue")))),
    ("a red circle to the left of a blue square",
     Requirements("position", (ObjectSpec("circle", "red"), ObjectSpec("square", "blue")), relation="left_of")),
    ("A Purple Triangle below a square.",
     Requirements("position", (ObjectSpec("triangle", "purple"), ObjectSpec("square")), relation="below")),
])
def test_parse_known_forms(text, req):
    assert parse_prompt(text) == req


@pytest.mark.parametrize("text, detail", [
    ("", "empty"),
    ("a pink circle", "expected a shape, found 'pink'"),
    ("two circle", "plural shape"),
    ("one circles", "singular shape"),
    ("a circle beside a square", "found 'beside'"),
    ("a circle and", "found 'the end'"),
    ("five circles", "expected 'a' or 'an'"),
    ("a red circle and a blue square and a green triangle", "unexpected words"),
])
def test_parse_errors_name_the_text_and_the_grammar(text, detail):
    with pytest.raises(ValueError) as err:
        parse_prompt(text)
    msg = str(err.value)
    assert repr(text) in msg and detail in msg and "accepted forms" in msg


def test_caption_refuses_scenes_of_the_wrong_form():
    smp = sample_many(2, seed=0)[1]  # a two-object scene
    with pytest.raises(ValueError, match="exactly one object"):
        caption(smp.scene, "single_object")
    with pytest.raises(ValueError, match="unknown category"):
        caption(smp.scene, "poses")
    assert set(CATEGORIES) >= {"position", "color_attr"}


def test_requirement_key_ignores_order_and_mirrored_relations():
    a = parse_prompt("a red circle to the right of a blue square")
    b = parse_prompt("a blue square to the left of a red circle")
    assert requirement_key(a) == requirement_key(b)
    assert requirement_key(parse_prompt("a red circle and a blue square")) == requirement_key(
        parse_prompt("a blue square and a red circle"))
