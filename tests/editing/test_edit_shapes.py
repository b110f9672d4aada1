"""The ShapesWorld editing benchmark: its cases, its scoring on known images, and a small end-to-end run."""
import argparse
import json

import numpy as np
import pytest

from agsm.editing.preservation import PSNR_CAP, found_in_place, outside_box, psnr
from agsm.eval.edit_shapes import add_commands, make_cases, run_edit_benchmark, score_edit
from agsm.shapes.grammar import parse_prompt
from agsm.shapes.render import render


def test_cases_are_deterministic_and_change_one_attribute_of_one_object():
    cases = make_cases(36, seed=5)
    assert [(c.source_prompt, c.target_prompt) for c in cases] == \
           [(c.source_prompt, c.target_prompt) for c in make_cases(36, seed=5)]
    assert [(c.source_prompt) for c in cases] != [c.source_prompt for c in make_cases(36, seed=6)]
    assert {(len(c.source.objects), c.kind) for c in cases} == {(k, e) for k in (1, 2, 3) for e in ("color", "shape")}
    for c in cases:
        changed = [(a, b) for a, b in zip(c.source.objects, c.target.objects) if a != b]
        assert len(changed) == 1 and changed[0][0] is c.source.objects[c.edited]
        a, b = changed[0]
        assert (a.color != b.color) == (c.kind == "color") and (a.shape != b.shape) == (c.kind == "shape")
        assert (a.x, a.y, a.size) == (b.x, b.y, b.size)
        assert len({(o.shape, o.color) for o in c.target.objects}) == len(c.target.objects)
        if len(c.source.objects) <= 2:  # within the grammar: the judge's own parse agrees with ours
            assert set(parse_prompt(c.target_prompt).objects) == set(c.requirements.objects)


def test_scoring_on_known_images():
    case = next(c for c in make_cases(12, seed=0) if len(c.source.objects) == 3)
    source, ideal = render(case.source), render(case.target)
    perfect = score_edit(case, source, ideal)
    assert perfect["success"] and perfect["clean"] and perfect["old_gone"] and perfect["kept"] == [True, True]
    assert perfect["psnr_outside"] == PSNR_CAP and perfect["psnr"] < PSNR_CAP
    nothing = score_edit(case, source, source)
    assert not nothing["success"] and not nothing["clean"] and not nothing["old_gone"]
    assert nothing["psnr"] == PSNR_CAP
    blank = score_edit(case, source, render(type(case.source)((case.target.objects[case.edited],))))
    assert blank["success"] is False and blank["kept"] == [False, False]


def test_preservation_helpers():
    a = np.full((8, 8, 3), 255, np.uint8)
    b = a.copy()
    b[0, 0] = 0
    assert psnr(a, a) == PSNR_CAP
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (3 * 255**2 / 192)))
    mask = outside_box((8, 8), (0, 0, 1, 1), margin=1)
    assert psnr(a, b, mask) == PSNR_CAP and mask.sum() == 64 - 4
    with pytest.raises(ValueError, match="does not select"):
        psnr(a, b, np.zeros((8, 8), bool))
    obj = make_cases(1)[0].source.objects[0]
    assert found_in_place(obj, [type("D", (), {"shape": obj.shape, "color": obj.color,
                                               "center": (obj.center[0] + 2, obj.center[1])})()])


def _eval(argv):
    parser = argparse.ArgumentParser(prog="agsm eval")
    add_commands(parser.add_subparsers(dest="suite", required=True))
    args, extra = parser.parse_known_args(argv)
    args.run(args, extra)


@pytest.mark.slow
def test_benchmark_end_to_end_with_tokens(shapes_model_dir, shapes_pipe, make_token_file, tmp_path, capsys):
    tokens = make_token_file(tmp_path / "tokens", shapes_pipe)
    out = tmp_path / "bench"
    _eval(["edit-shapes", "--model", str(shapes_model_dir), "--tokens", str(tokens), "--out", str(out),
           "--n", "3", "--steps", "10", "--seed", "1"])
    assert "base" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["variants"]) == {"base", "tokens"}
    assert results["options"] == {"steps": 10, "source_guidance": 1.0, "target_guidance": 7.5}
    for variant in results["variants"].values():
        assert [c["seed"] for c in variant["cases"]] == [1, 2, 3]
        assert set(variant["summary"]) >= {"all", "color", "1 objects", "2 objects", "3 objects"}
        assert variant["summary"]["all"]["untouched_objects"] == 0 + 1 + 2
    base, tok = (results["variants"][k]["cases"] for k in ("base", "tokens"))
    assert any(b["psnr"] != t["psnr"] for b, t in zip(base, tok))  # tokens took part in the edits
    assert 20 < results["vae_round_trip_psnr"] < 60
    assert "| tokens | all | 3 |" in (out / "results.md").read_text()
    from PIL import Image

    assert Image.open(out / "grid.png").size[1] > 3 * 128


def test_benchmark_refuses_a_model_of_another_size(sd15_dir, tmp_path):
    with pytest.raises(ValueError, match="draws 32 px images; the ShapesWorld benchmark needs a 64 px"):
        run_edit_benchmark(sd15_dir, tmp_path / "x", n=1)
    with pytest.raises(ValueError, match="--n 0 must be >= 1"):
        make_cases(0)
