"""The judge: GenEval rules on detections, and its measured agreement on degraded renders."""

import time

import numpy as np

from agsm.shapes.grammar import parse_prompt
from agsm.shapes.render import render
from agsm.shapes.robustness import measure_judge
from agsm.shapes.spec import Scene, ShapeObject
from agsm.shapes.verify import judge, verify


def _scene(*objs):
    return Scene(tuple(ShapeObject(*o) for o in objs))


def test_rules_counting_is_exact_and_unnamed_objects_are_allowed():
    scene = _scene(("circle", "red", 2, 2, 12), ("circle", "red", 30, 2, 12), ("square", "blue", 2, 40, 12))
    img = render(scene)
    assert verify(img, "two red circles").correct
    assert verify(img, "two circles").correct
    assert not verify(img, "three circles").correct
    assert not verify(img, "one circle").correct
    assert verify(img, "a blue square").correct  # the circles are not named: allowed
    assert verify(np.asarray(img), "a red circle and a red circle").correct  # named twice: two needed
    assert not verify(img, "a blue square and a blue square").correct
    v = verify(img, "a green circle")
    assert not v.correct and "missing green circle" in v.reason and v.category == "colors"
    assert len(v.detections) == 3


def test_rules_position_uses_centres_with_margin():
    level = _scene(("circle", "red", 10, 10, 12), ("square", "blue", 40, 12, 12))  # centres 2 px apart vertically
    assert judge(parse_prompt("a red circle to the left of a blue square"), level.objects)[0]
    assert judge(parse_prompt("a blue square to the right of a red circle"), level.objects)[0]
    assert not judge(parse_prompt("a red circle above a blue square"), level.objects)[0]  # within the 3 px margin
    assert not judge(parse_prompt("a red circle to the right of a blue square"), level.objects)[0]
    diagonal = _scene(("circle", "red", 5, 5, 12), ("square", "blue", 40, 40, 12))
    assert judge(parse_prompt("a red circle above a blue square"), diagonal.objects)[0]  # relations overlap
    v = verify(render(diagonal), "a red circle below a green square")
    assert not v.correct and "missing green square" in v.reason and v.category == "position"


def test_verify_label_category_and_refuse_unknown():
    img = render(_scene(("circle", "red", 5, 5, 12)))
    assert verify(img, "a red circle", category="single_object").category == "single_object"
    try:
        verify(img, "a red circle", category="shapes")
    except ValueError as err:
        assert "category 'shapes'" in str(err)
    else:
        raise AssertionError("unknown category accepted")


def test_judge_agreement_on_degraded_renders():
    """>= 99.5% agreement on true prompts and rejection of false ones (figures: src/agsm/shapes/README.md)."""
    t0 = time.time()
    result = measure_judge(n=2400, seed=0)
    assert result["mismatching_prompts"] >= 2400
    assert set(result["mismatch_kinds"]) == {"count", "relation", "color", "shape"}
    assert result["agreement_on_matching"] >= 0.995, result["failures"][:10]
    assert result["rejection_of_mismatching"] >= 0.995, result["failures"][:10]
    assert time.time() - t0 < 120
