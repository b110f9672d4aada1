"""`agsm eval shapes` and the demo pipeline, end to end on the shipped ShapesWorld model at toy budget."""
import json

import pytest

from agsm.demo import BACKBONES

BASE_MODEL = BACKBONES["sd15"]
pytestmark = pytest.mark.slow


def test_eval_shapes_writes_results_and_grids(tmp_path):
    from agsm.cli import main

    main(["eval", "shapes", "--model", str(BASE_MODEL), "--per-category", "2", "--images-per-prompt", "2",
          "--steps", "10", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result["accuracy"]) == {"single_object", "two_objects", "counting", "colors", "position", "color_attr"}
    assert len(result["verdicts"]) == 6 * 2 * 2
    assert abs(result["mean"] - sum(result["accuracy"].values()) / 6) < 1e-9
    for category, acc in result["accuracy"].items():
        hits = [v["correct"] for v in result["verdicts"] if v["category"] == category]
        assert acc == sum(hits) / len(hits)
    assert 0.0 <= result["overcount_rate"] <= 1.0
    assert len(list(tmp_path.glob("grid_*.png"))) == 6


def test_fast_demo_writes_the_report(tmp_path):
    from agsm.demo import main

    main(["--fast", "--out", str(tmp_path)])
    report = (tmp_path / "report.md").read_text()
    for text in ("base", "softrepa", "agsm", "ceiling", "sd15", "sd3", "single_object", "over-count", "(n=1)",
                 "training seed", "docs/study.md", "agsm - base", "ceiling - base", "McNemar p", "resolved",
                 "verdicts differ between the columns"):
        assert text in report
    assert "± 0.000" not in report  # one seed has no spread to show, not a spread of zero
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64") == 2 * len(BACKBONES)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == set(BACKBONES)
    for backbone in BACKBONES:
        assert set(summary[backbone]) == {"base", "softrepa", "agsm", "ceiling", "paired"}
        assert [row["comparison"] for row in summary[backbone]["paired"]][:2] == ["agsm - base", "ceiling - base"]
        assert (tmp_path / backbone / "side_by_side.png").is_file()
        # the ceiling ran with the guidance: its evaluation records the rule, the others none
        ceiling = json.loads((tmp_path / backbone / "eval" / "ceiling" / "config.json").read_text())
        assert ceiling["sampling_hook"]["rule"] == "alignment guidance"
        assert "sampling_hook" not in json.loads((tmp_path / backbone / "eval" / "base" / "config.json").read_text())


def test_disagreement_rows_are_the_images_whose_verdicts_differ():
    from agsm.report.paired_sections import disagreements, paired_rows

    def run(*correct):
        return {"verdicts": [{"correct": c, "category": "counting", "prompt": f"p{i}", "seed": i, "image": 0}
                             for i, c in enumerate(correct)]}

    runs = {"base": run(True, False, True, False), "agsm": run(True, True, True, False),
            "ceiling": run(False, False, True, False)}
    assert disagreements(runs) == [0, 1]
    row = paired_rows(runs, [("base", "agsm")])[0]
    assert (row["flips_up"], row["flips_down"], row["diff"]) == (1, 0, 0.25)
