"""The shipped evaluation suite is regenerable, balanced, parseable, and held out from training sets."""

from collections import Counter

from agsm.shapes.dataset import training_samples
from agsm.shapes.grammar import parse_prompt
from agsm.shapes.requirements import Requirements, requirement_key
from agsm.shapes.spec import CATEGORIES
from agsm.shapes.suite import HELD_OUT_CATEGORIES, build_eval_suite, held_out_keys, load_eval_suite


def test_shipped_suite_matches_its_seeded_builder():
    assert load_eval_suite() == build_eval_suite()


def test_suite_has_fifty_prompts_per_category_with_requirements():
    suite = load_eval_suite()
    counts = Counter(line["category"] for line in suite)
    assert set(counts) == set(CATEGORIES) and min(counts.values()) >= 50
    assert len({line["seed"] for line in suite}) == len(suite)
    for line in suite:
        req = Requirements.from_dict(line["requirements"])
        parsed = parse_prompt(line["prompt"])
        assert (req.objects, req.count, req.relation) == (parsed.objects, parsed.count, parsed.relation)
        assert req.category == line["category"]
    for category in ("counting", "two_objects", "color_attr", "position"):
        prompts = [line["prompt"] for line in suite if line["category"] == category]
        assert len(set(prompts)) == len(prompts), f"{category} repeats prompts"


def test_held_out_compositions_never_reach_training_sets():
    keys = held_out_keys()
    assert len(keys) == 50 * len(HELD_OUT_CATEGORIES)
    train = training_samples(3000, seed=0)
    assert not {requirement_key(parse_prompt(s.prompt)) for s in train} & keys
    unfiltered = training_samples(3000, seed=0, exclude_suite=False)
    assert {requirement_key(parse_prompt(s.prompt)) for s in unfiltered} & keys  # the filter does work
