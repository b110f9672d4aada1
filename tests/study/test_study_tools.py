"""The study's measuring tools: the reward-ranking signal, the quality axis, and the arm comparison."""
import json

import numpy as np
import pytest

from agsm.demo import BACKBONES
from agsm.shapes.render import render
from agsm.shapes.scenes import sample_many
from agsm.study import compare, quality
from agsm.study.signal import NEGATIVES, measure

SD15_TINY = BACKBONES["sd15"]


@pytest.mark.slow
def test_signal_ranks_true_captions_above_chance_at_small_t():
    result = measure(SD15_TINY, per_category=3, timesteps=(100, 900), draws=1, batch=18)
    assert set(result["overall"]) == set(NEGATIVES)
    low = result["overall_by_t"]["in_batch"]["100"]
    assert 0.0 <= result["overall_by_t"]["in_batch"]["900"] <= 1.0
    # The shipped model tells a scene's own caption from another scene's caption at low noise.
    assert low > 0.75, low
    assert result["table"]["position"]["relation"]["n"] == 3 * 2  # 3 scenes x 2 timesteps x 1 draw
    assert 0.25 <= result["own_weight_in_batch_k4"]["overall"] <= 1.0


def test_quality_of_clean_renders_and_of_a_smear():
    images = np.stack([np.asarray(render(s.scene)) for s in sample_many(12, seed=4)])
    clean = quality.image_quality(images)
    assert clean == {"malformed_rate": 0.0, "background_noise": 0.0, "clean_rate": 1.0}
    smeared = images.copy()
    smeared[:, 30:32, 2:60] = (220, 30, 30)  # a long thin red line: no object looks like that
    noisy = quality.image_quality(smeared)
    assert noisy["malformed_rate"] > 0.5 and noisy["clean_rate"] < 0.5


def _write_run(folder, correct, images, mean):
    folder.mkdir(parents=True, exist_ok=True)
    verdicts = [{"correct": c, "category": "counting", "prompt": f"{i + 2} circles"} for i, c in enumerate(correct)]
    result = {"accuracy": {c: mean for c in compare.CATEGORIES}, "mean": mean, "overcount_rate": 0.1,
              "verdicts": verdicts, "quality": {"clean_rate": 1.0, "background_noise": 0.0}}
    (folder / "eval-dev.json").write_text(json.dumps(result))
    np.savez_compressed(folder / "images-dev.npz", images=images)


def test_compare_reports_spread_over_training_seeds_and_effect_against_base(tmp_path):
    base = np.full((4, 8, 8, 3), 255, np.uint8)
    _write_run(tmp_path / "sd15" / "base", [True, False, False, True], base, 0.5)
    moved = base.copy()
    moved[0, :4] = 200  # half the pixels of image 0 move by 55
    _write_run(tmp_path / "sd15" / "arm" / "seed0", [True, True, False, False], moved, 0.6)
    _write_run(tmp_path / "sd15" / "arm" / "seed1", [True, True, True, True], base, 0.8)
    arms = compare.compare(tmp_path, "sd15", "dev")
    arm = arms["arm"]
    assert arm["seeds"] == 2
    assert arm["mean"][0] == pytest.approx(0.7) and arm["mean"][1] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert arm["pixel_change"][0] == pytest.approx((55 * 32 / (4 * 64)) / 2)  # seed0 only, averaged over seeds
    assert arm["moved_share"][0] == pytest.approx((32 / 256) / 2)
    assert arm["wrong_to_right"][0] == pytest.approx((0.25 + 0.5) / 2)
    assert arm["right_to_wrong"][0] == pytest.approx((0.25 + 0.0) / 2)
    assert arms["base"]["mean"][1] is None  # one run: no spread, not a spread of zero
    table = compare.markdown(arms)
    assert "0.700 ± 0.141" in table and "0.500 |" in table
    compare.pareto(arms, tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").stat().st_size > 1000
    from PIL import Image

    sheet = Image.open(compare.same_seed_grid(tmp_path, "sd15", "dev", ["arm"], tmp_path / "g.png"))
    assert sheet.height > 4 * 16 and sheet.width > 2 * 16  # 3 counting rows under a header; base and arm


def test_order_bias_splits_position_verdicts_by_where_the_first_object_must_go():
    from agsm.study.order_bias import order_bias

    verdicts = [
        {"category": "position", "prompt": "a red circle to the left of a blue square", "correct": True},
        {"category": "position", "prompt": "a red circle above a blue square", "correct": True},
        {"category": "position", "prompt": "a red circle to the right of a blue square", "correct": False},
        {"category": "position", "prompt": "a red circle below a blue square", "correct": True},
        {"category": "counting", "prompt": "two circles", "correct": False},  # not a position verdict: ignored
    ]
    halves = order_bias(verdicts)
    assert halves["first left/top"] == {"correct": 2, "n": 2, "rate": 1.0}
    assert halves["first right/bottom"] == {"correct": 1, "n": 2, "rate": 0.5}
