"""The miniature Table 3's report: arms found in the study's folder layout, seed-paired AGSM gains, the chart."""
import json

import numpy as np
import pytest

from agsm.study import compare, preference_report


def _write_run(folder, mean, images):
    folder.mkdir(parents=True, exist_ok=True)
    verdicts = [{"correct": i < round(mean * len(images)), "category": "counting", "prompt": f"{i + 2} circles"}
                for i in range(len(images))]
    result = {"accuracy": {c: mean for c in compare.CATEGORIES}, "mean": mean, "overcount_rate": 0.0,
              "verdicts": verdicts, "quality": {"clean_rate": 1.0, "background_noise": 0.0}}
    (folder / "eval-test.json").write_text(json.dumps(result))
    np.savez_compressed(folder / "images-test.npz", images=images)


def test_report_pairs_each_backbone_seed_with_its_own_tokens(tmp_path):
    images = np.full((4, 8, 8, 3), 255, np.uint8)
    _write_run(tmp_path / "base/sd15/base", 0.5, images)
    _write_run(tmp_path / "base/sd15/agsm/seed0", 0.75, images)
    _write_run(tmp_path / "base/sd15/agsm/seed1", 0.5, images)
    # DPO seed 0 is strong and AGSM adds nothing; seed 1 is weak and AGSM adds 0.25: paired gains 0 and 0.25
    _write_run(tmp_path / "dpo-seed0/sd15/base", 1.0, images)
    _write_run(tmp_path / "dpo-seed0/sd15/agsm/seed0", 1.0, images)
    _write_run(tmp_path / "dpo-seed1/sd15/base", 0.25, images)
    _write_run(tmp_path / "dpo-seed1/sd15/agsm/seed1", 0.5, images)
    arms, gains = preference_report.summarise(tmp_path, "test")
    assert list(arms) == ["base", "+AGSM", "DPO", "DPO+AGSM"]  # InPO / SPO not run: left out, not zero
    assert arms["DPO"]["mean"][0] == pytest.approx(0.625) and arms["DPO"]["seeds"] == 2
    assert gains["DPO"]["per_seed"] == pytest.approx([0.0, 0.25])
    assert gains["DPO"]["seeds_gaining"] == 1
    assert gains["base"]["per_seed"] == pytest.approx([0.25, 0.0])
    table = preference_report.markdown(arms, gains)
    assert "| DPO | +0.125 ± 0.177 | 1 of 2 | ± " in table  # then the seeds' paired intervals
    # 4 images per run: no seed's paired interval can exclude 0 (seed 1's one flip of 4 is within the noise)
    assert gains["DPO"]["seeds_resolved"] == 0 and gains["DPO"]["ci_half_width"] > 0
    assert "| vs shipped model, paired (95% CI) | - |" in table
    preference_report.main(["--root", str(tmp_path), "--prompts", "test", "--out", str(tmp_path / "report")])
    for name in ("table.md", "table.json", "chart.png", "pareto.png", "same_seed.png"):
        assert (tmp_path / "report" / name).stat().st_size > 100


def test_report_without_a_base_evaluation_says_which_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="base stage"):
        preference_report.summarise(tmp_path, "test")
