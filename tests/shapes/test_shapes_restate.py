"""restate.py: every restatement is another true caption of the same scene, in the grammar."""

import random

import pytest

from agsm.shapes.grammar import parse_prompt
from agsm.shapes.restate import INVERSE_RELATION, drop_colors, inverse_relation, restatement
from agsm.shapes.scenes import sample_many
from agsm.shapes.verify import judge


def _true_of(prompt, scene) -> bool:
    """The exact judge on the scene's own objects (ground truth, no rendering or detection)."""
    return judge(parse_prompt(prompt), scene.objects)[0]


def test_inverse_relation_states_the_same_fact_from_the_other_object():
    for smp in sample_many(60, seed=0, categories=("position",)):
        restated = inverse_relation(smp.prompt)
        before, after = parse_prompt(smp.prompt), parse_prompt(restated)
        assert after.relation == INVERSE_RELATION[before.relation]
        assert after.objects == before.objects[::-1]
        assert _true_of(restated, smp.scene), (smp.prompt, restated)
        assert inverse_relation(restated) == smp.prompt  # inverting twice gives the caption back


def test_inverse_relation_leaves_captions_without_a_relation_alone():
    for prompt in ("a red circle", "a circle and a blue square", "three green triangles"):
        assert inverse_relation(prompt) is None


def test_drop_colors_keeps_a_pair_true_with_fewer_colours():
    rng, dropped = random.Random(0), {1: 0, 2: 0}
    for smp in sample_many(120, seed=1, categories=("two_objects", "color_attr")):
        restated = drop_colors(smp.prompt, rng)
        before = parse_prompt(smp.prompt)
        if not any(o.color for o in before.objects):
            assert restated is None
            continue
        after = parse_prompt(restated)
        assert [o.shape for o in after.objects] == [o.shape for o in before.objects]
        assert all(a.color in (None, b.color) for a, b in zip(after.objects, before.objects))
        n = sum(a.color != b.color for a, b in zip(after.objects, before.objects))
        assert n >= 1
        dropped[n] += 1
        assert _true_of(restated, smp.scene), (smp.prompt, restated)
    assert dropped[1] > 0 and dropped[2] > 0  # one colour or both, as rng chooses


@pytest.mark.parametrize("prompt", ["a red circle", "three green triangles", "one circle",
                                    "a red circle above a blue square", "a circle and a square"])
def test_drop_colors_applies_to_coloured_pairs_only(prompt):
    assert drop_colors(prompt, random.Random(0)) is None


def test_restatement_picks_the_one_that_applies_reproducibly():
    assert restatement("a red circle above a blue square", random.Random(0)) == "a blue square below a red circle"
    pair = "a red circle and a blue square"
    again = restatement(pair, random.Random(3))
    assert again == restatement(pair, random.Random(3)) == drop_colors(pair, random.Random(3))
    assert restatement("two red squares", random.Random(0)) is None
