"""`agsm report`: COCO, ShapesWorld and PIE-Bench results side by side with the right best marks."""
import argparse
import json

import pytest

from agsm.report.cli import add_report_command, build_tables


def _coco(label, clip, ir, fid):
    return {"kind": "coco", "label": label, "n": 10, "fid": {"value": fid} if fid is not None else None,
            "metrics": {"clip": {"mean": clip, "n": 10}, "imagereward": {"mean": ir, "n": 10}}}


def _shapes(mean_over):
    acc = {"single_object": 0.9, "counting": mean_over[0]}
    return {"accuracy": acc, "mean": sum(acc.values()) / 2, "overcount_rate": mean_over[1], "verdicts": []}


def _pie(label, psnr, lpips):
    return {"kind": "pie-bench", "label": label, "n": 2, "by_type": {},
            "metrics": {"psnr": {"mean": psnr, "n": 2}, "lpips": {"mean": lpips, "n": 2},
                        "clip_edited": {"mean": None, "n": 0}}}


def _write(tmp_path, name, data):
    path = tmp_path / name / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return path


def test_best_marks_follow_each_rows_direction(tmp_path):
    files = [_write(tmp_path, "base", _coco("base", 26.4, 0.1772, 24.59)),
             _write(tmp_path, "agsm", _coco("agsm", 27.23, 0.345, 25.94)),
             _write(tmp_path, "nofid", _coco("nofid", 27.23, 0.30, None)),
             _write(tmp_path, "s1", _shapes((0.5, 0.4))), _write(tmp_path, "s2", _shapes((0.7, 0.1))),
             _write(tmp_path, "p1", _pie("pnp", 22.0, 0.1)), _write(tmp_path, "p2", _pie("pnp+agsm", 23.0, 0.2))]
    tables = build_tables(files)
    coco = tables["coco"]
    assert coco["labels"] == ["base", "agsm", "nofid"]
    assert coco["rows"]["CLIP x100"] == [(26.4, False), (27.23, True), (27.23, True)]  # ties share the mark
    assert coco["rows"]["ImageReward x100"][1] == (pytest.approx(34.5), True)
    assert coco["rows"]["FID"] == [(24.59, True), (25.94, False), (None, False)]  # lower is better
    shapes = tables["shapes"]
    assert shapes["labels"] == ["s1", "s2"]  # no label in the file: its folder
    assert shapes["rows"]["counting"] == [(0.5, False), (0.7, True)]
    assert shapes["rows"]["over-count rate"] == [(0.4, False), (0.1, True)]
    assert shapes["higher"]["counting"] and not shapes["higher"]["over-count rate"]
    pie = tables["pie-bench"]
    assert pie["rows"]["PSNR"] == [(22.0, False), (23.0, True)]
    assert pie["rows"]["LPIPS x10^3"] == [(pytest.approx(100.0), True), (pytest.approx(200.0), False)]
    assert "CLIP edited" not in pie["rows"]


def test_command_writes_markdown_and_html(tmp_path):
    files = [_write(tmp_path, "a", _coco("a", 26.0, 0.2, 30.0)), _write(tmp_path, "b", _coco("b", 27.0, 0.1, 25.0))]
    parser = argparse.ArgumentParser()
    add_report_command(parser.add_subparsers())
    args = parser.parse_args(["report", *map(str, files), "--out", str(tmp_path / "r"), "--labels", "base", "AGSM"])
    args.run(args, [])
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| | base | AGSM |" in md
    assert "| CLIP x100 ↑ | 26.00 | **27.00** |" in md and "| ImageReward x100 ↑ | **20.00** | 10.00 |" in md
    assert "| FID ↓ | 30.00 | **25.00** |" in md
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count('class="best"') == 3 and "<th>AGSM</th>" in page


def test_bad_inputs_are_named(tmp_path):
    bogus = _write(tmp_path, "x", {"something": 1})
    with pytest.raises(ValueError, match="not a results file"):
        build_tables([bogus])
    with pytest.raises(ValueError, match="2 names for 1 results files"):
        build_tables([bogus], ["a", "b"])
    with pytest.raises(FileNotFoundError, match="no results file"):
        build_tables([tmp_path / "missing.json"])
