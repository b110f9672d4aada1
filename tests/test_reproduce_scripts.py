"""scripts/reproduce/: each paper table's script runs end to end at --smoke size and writes the paper's rows and
columns with our numbers filled and the published ones beside them; the published numbers are docs/method.md's; a
rerun skips finished stages and redoes an evaluation whose token file changed; GenEval's results are summarised
as GenEval does."""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agsm.report.paper_tables import (COCO_TABLE, GENEVAL_TABLE, PAPER_TABLES, PREFERENCE_TABLE, fill,
                                      geneval_numbers, table_markdown)

ROOT = Path(__file__).parents[1]
SCRIPTS = ROOT / "scripts" / "reproduce"
NAMES = {"coco": "coco_table1", "geneval": "geneval_sd3", "preference": "preference_table3",
         "pie": "pie_bench_editing"}


def _script(name, monkeypatch, tmp_path):
    """The script as a module (its folder on sys.path, as when run as a script); the dataset cache in tmp."""
    import datasets

    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    spec = importlib.util.spec_from_file_location(f"reproduce_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_table(out, table_name):
    """table.json has the paper's rows and columns, every one of our cells a finite number and the published
    values; table.md shows each row with the paper's values in brackets."""
    table = PAPER_TABLES[table_name]
    filled = json.loads((out / "table.json").read_text())
    assert [r["key"] for r in filled["rows"]] == [r.key for r in table.rows]
    assert [c["key"] for c in filled["columns"]] == [c.key for c in table.columns]
    markdown = (out / "table.md").read_text()
    for row, spec in zip(filled["rows"], table.rows):
        assert all(v is not None and math.isfinite(v) for v in row["ours"].values()), row
        assert {k: v for k, v in row["published"].items() if v is not None} == spec.published
        line = next(l for l in markdown.splitlines() if l.startswith("| " + " | ".join(spec.labels) + " |"))
        assert all(f"({value})" in line for value in spec.published.values()), line
    return filled


def _stage_lines(text):
    return [line for line in text.splitlines() if re.match(r"\[\w+ \d+\] ", line)]


@pytest.mark.slow  # ~10 CPU-s: six toy trainings, nine evaluations, then two reruns (all four smokes: ~40 CPU-s)
def test_coco_table1_smoke_then_a_rerun_skips_and_a_changed_token_file_is_evaluated_afresh(tmp_path, monkeypatch,
                                                                                          capsys):
    script, out = _script("coco_table1", monkeypatch, tmp_path), tmp_path / "table1"
    script.main(["--smoke", "--out", str(out)])
    first = _check_table(out, "coco")
    assert len(_stage_lines(capsys.readouterr().out)) == 15  # per backbone: 2 trainings, 3 evaluations

    script.main(["--smoke", "--out", str(out)])
    lines = _stage_lines(capsys.readouterr().out)
    assert len(lines) == 15 and all(line.endswith("finished earlier, skipped") for line in lines)
    assert json.loads((out / "table.json").read_text()) == first

    tokens = out / "runs" / "sd15-agsm" / "soft_tokens.safetensors"  # as if the run had been trained further
    later = tokens.stat().st_mtime + 10
    os.utime(tokens, (later, later))
    started = time.time()
    script.main(["--smoke", "--out", str(out)])
    redone = [line for line in _stage_lines(capsys.readouterr().out) if not line.endswith("skipped")]
    assert redone == ["[table1 5] evaluate sd15 agsm on COCO: its inputs changed, folder cleared and started afresh"]
    images = list((out / "coco" / "sd15-agsm" / "images").iterdir())
    assert len(images) == 4 and all(p.stat().st_mtime >= started - 1 for p in images)  # drawn again


@pytest.mark.slow  # ~3 CPU-s
def test_geneval_smoke_exports_in_genevals_layout_and_reads_its_results(tmp_path, monkeypatch):
    out = tmp_path / "geneval"
    _script("geneval_sd3", monkeypatch, tmp_path).main(["--smoke", "--out", str(out)])
    _check_table(out, "geneval")
    for method in ("base", "softrepa", "agsm"):
        assert sorted(p.name for p in (out / "geneval" / method / "00000" / "samples").iterdir()) == ["0000.png",
                                                                                                    "0001.png"]
    score = (out / "geneval" / "score.sh").read_text()
    assert score.count("evaluation/evaluate_images.py") == 3 and "agsm-results.jsonl" in score


@pytest.mark.slow  # ~15 CPU-s: six preference runs, six token runs and twelve evaluations of toy models
def test_preference_table3_smoke(tmp_path, monkeypatch):
    out = tmp_path / "table3"
    _script("preference_table3", monkeypatch, tmp_path).main(["--smoke", "--out", str(out)])
    filled = _check_table(out, "preference")
    row = next(r for r in filled["rows"] if r["key"] == "sdxl/spo")
    assert row["from"]["backbone"] == str(out / "runs" / "sdxl-spo" / "unet")  # trained here, then tokens on it


@pytest.mark.slow  # ~7 CPU-s: two token runs and ten PIE-Bench evaluations of two edits
def test_pie_bench_editing_smoke(tmp_path, monkeypatch):
    out = tmp_path / "pie"
    _script("pie_bench_editing", monkeypatch, tmp_path).main(["--smoke", "--out", str(out)])
    _check_table(out, "pie")
    config = json.loads((out / "pie" / "sd15-masactrl-tokens" / "config.json").read_text())
    assert config["method"] == "masactrl" and config["tokens"].endswith("sd15-agsm/soft_tokens.safetensors")


@pytest.mark.parametrize("name", NAMES.values())
def test_each_script_documents_its_real_size_command(name):
    """Run as a script: --help shows the real-size command and the smoke size, without loading torch."""
    done = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"python scripts/reproduce/{name}.py --out" in done.stdout and "--smoke" in done.stdout
    assert "GPU-hours" in done.stdout and "estimate" in done.stdout


def test_missing_inputs_are_named(tmp_path, monkeypatch):
    script = _script("coco_table1", monkeypatch, tmp_path)
    with pytest.raises(SystemExit, match="--model ARCH=DIR and --coco DIR"):
        script.main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="'sd2' is not one of sd15, sd3, sdxl"):
        script.main(["--out", str(tmp_path), "--model", "sd2=/models/x", "--coco", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="captions_val2017.json is missing"):  # before any training
        script.main(["--out", str(tmp_path / "o"), "--model", "sd15=/models/x", "--coco", str(tmp_path),
                     "--train-images", str(tmp_path)])
    assert not (tmp_path / "o" / "runs").exists()


def test_published_numbers_are_docs_method_md():
    text = (ROOT / "docs" / "method.md").read_text()
    prose = " ".join(text.split())
    for arch, label in (("sd15", "SD1.5"), ("sdxl", "SDXL"), ("sd3", "SD3")):
        cells = [" / ".join(COCO_TABLE.row(f"{arch}/{m}").published[c.key] for c in COCO_TABLE.columns)
                 for m in ("base", "softrepa", "agsm")]
        assert f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} |" in text.splitlines()
    for method, label in (("base", "base"), ("softrepa", "SoftREPA"), ("agsm", "AGSM")):
        row = GENEVAL_TABLE.row(f"sd3/{method}")
        assert f"{label} {' / '.join(row.published[c.key] for c in GENEVAL_TABLE.columns)}" in prose
    written = re.search(r"SD1\.5: (.*?)\. SDXL: (.*?)\.(?: |$)", prose)
    for arch, sentence in zip(("sd15", "sdxl"), written.groups()):
        pairs = dict((name, (a, b)) for name, a, b in
                     re.findall(r"(Diffusion-DPO|SPO|InPO) ([\d.]+)(?:, with AGSM | -> )([\d.]+)", sentence))
        for method, name in (("dpo", "Diffusion-DPO"), ("spo", "SPO"), ("inpo", "InPO")):
            published = PREFERENCE_TABLE.row(f"{arch}/{method}").published
            assert pairs[name] == (published["backbone"], published["agsm"])


def test_fill_leaves_rows_not_run_empty_and_refuses_unknown_rows():
    filled = fill(COCO_TABLE, {"sd15/agsm": {"imagereward": 0.5, "fid": 30.0}}, {"sd15/agsm": {"tokens": "t"}})
    row = next(r for r in filled["rows"] if r["key"] == "sd15/agsm")
    assert row["ours"]["imagereward"] == 0.5 and row["ours"]["clip"] is None and row["from"] == {"tokens": "t"}
    markdown = table_markdown(filled)
    assert "| SD1.5 | AGSM | 0.50 (34.50) | - (21.59) |" in markdown
    assert "| SD3 | base | - (94.27) |" in markdown
    with pytest.raises(KeyError, match="no rows \\['sd15/dsm'\\]"):
        fill(COCO_TABLE, {"sd15/dsm": {}})


def test_geneval_numbers_average_the_tags_as_genevals_summary_does(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [("counting", True), ("counting", False), ("counting", True), ("colors", True)]
    path.write_text("".join(json.dumps({"tag": t, "correct": c, "filename": "x.png"}) + "\n" for t, c in rows))
    scores = geneval_numbers(path)
    assert scores["counting"] == pytest.approx(2 / 3) and scores["colors"] == 1.0
    assert scores["overall"] == pytest.approx((2 / 3 + 1) / 2)  # the mean over tags, not over images (3/4)
    path.write_text('{"tag": "counting"}\n')
    with pytest.raises(ValueError, match="line 1 is not a GenEval result"):
        geneval_numbers(path)
