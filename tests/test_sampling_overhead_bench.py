"""Smoke check of benchmarks/sampling_overhead.py on the toy pipelines: one timed round, tokens really injected,
'without' really stock, the table and JSON written."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "sampling_overhead.py"


def _bench():
    spec = importlib.util.spec_from_file_location("sampling_overhead", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sampling_overhead_runs_on_toy_models(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    results = _bench().main(["--scale", "toy", "--models", "sd15", "sd3", "--steps", "1", "--repeats", "1",
                             "--warmup", "0", "--batch", "2", "--same-process", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert [r["architecture"] for r in saved["results"]] == ["sd15", "sd3"] == [r["architecture"] for r in results]
    for result in saved["results"]:
        assert result["denoiser_batch"] == 4  # guidance on: the denoiser sees both branches
        assert [row["mode"] for row in result["rows"]] == ["positive", "negative"]
        for row in result["rows"]:
            assert row["images_per_s_without"] > 0 and row["images_per_s_with"] > 0
            # the tokens add context rows, so a little compute, in the denoiser only
            assert row["flops_with"]["denoiser"] > row["flops_without"]["denoiser"]
            assert row["flops_with"]["pipeline"] - row["flops_without"]["pipeline"] == \
                row["flops_with"]["denoiser"] - row["flops_without"]["denoiser"]
    assert "| sd3 | negative |" in capsys.readouterr().out


def test_meta_flops_counts_the_tokens_compute(tmp_path):
    rows = _bench().main(["--meta-flops", "--scale", "toy", "--models", "sdxl", "--out", str(tmp_path / "f.json")])
    (row,) = rows
    # a little compute for the tokens' context rows; scale 0.5 runs the token layers' attention twice
    assert 0 < row["overhead_pct_positive"] == row["overhead_pct_negative"] < row["overhead_pct_scale0.5"]
