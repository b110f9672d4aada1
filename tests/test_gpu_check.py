"""scripts/gpu_check.sh's driver (benchmarks/gpu_check.py) at toy size on the CPU: every part reports its rows with
finite numbers, and a part made to fail, or to hang past its time guard, is reported so while the others report."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check_driver", DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numbers(row: dict):
    for key, value in row.items():
        if isinstance(value, dict):
            yield from _numbers(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield key, value


@pytest.mark.slow  # one whole toy run: a fork server importing torch, diffusers and agsm, then three toy parts
def test_toy_run_reports_every_part_and_the_failed_ones(tmp_path, capsys):
    driver = _driver()
    driver.main(["--toy", "--out", str(tmp_path), "--fail", "sdxl", "--fail", "env:hang", "--guard", "env=6"])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = {p["part"]: p for p in saved["parts"]}
    assert list(parts) == ["env", "sd15", "sd3", "sdxl", "equal"]
    assert {name: p["status"] for name, p in parts.items()} == {
        "env": "timed out", "sd15": "ok", "sd3": "ok", "sdxl": "failed", "equal": "ok"}

    for name in ("sd15", "sd3", "equal"):
        for row in parts[name]["rows"]:
            assert row["status"] == "ok", row
            assert all(math.isfinite(value) for _, value in _numbers(row)), row
    rows = {name: {r["row"]: r for r in parts[name]["rows"]} for name in ("sd15", "sd3", "equal")}
    for name, editor in (("sd15", "pnp"), ("sd3", "flowedit")):
        got = rows[name]
        for method in ("agsm", "softrepa", "dsm", "dpo"):
            train = got[f"train {method} bf16"]
            assert train["s_per_step"] > 0 and train["rate"] > 0 and train["gflop_per_step"] > 0
            assert 0 < train["mfu"] and train["peak_mib"] > 0
        assert got["train dsm fp16"]["precision"] == "fp16"  # the GradScaler path
        assert "LoRA" in got["train dpo bf16"]["trains"]
        for mode in ("positive", "negative"):
            assert got[f"sample, {mode} tokens"]["rate"] > 0 and got[f"sample, {mode} tokens"]["rate_without"] > 0
        assert got[f"edit {editor} + tokens"]["s_per_call"] > 0
    assert rows["equal"]["ours agsm bf16"]["vs_public"] > 0 and "public agsm bf16" in rows["equal"]

    # the hanging part keeps the row it finished before its guard stopped it; the rest of its plan is not run
    env = {r["row"]: r for r in parts["env"]["rows"]}
    assert env["environment"]["status"] == "ok" and saved["environment"]["device_name"] == "cpu"
    assert env["gemm bf16"]["status"].startswith("not run: part stopped by its 6 s guard")
    # the failed part says why, and lists what it did not run
    assert "on purpose" in parts["sdxl"]["error"]
    assert {r["status"] for r in parts["sdxl"]["rows"]} == {"not run: part ended"}

    table = (tmp_path / "gpu_check.md").read_text()
    assert table in capsys.readouterr().out  # printed as well as written
    for name in parts:
        assert f"| {name} |" in table
    assert "| sdxl | build | not run: part ended |" in table
    assert driver.markdown(saved) == table.rstrip("\n")  # --report renders the same table from the JSON
    written = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert {"plan", "row", "done", "error"} <= {record["event"] for record in written}


@pytest.mark.parametrize("option, message", [(["--fail", "sd4"], "--fail 'sd4'"),
                                             (["--fail", "sd15:crash"], "PART:hang"),
                                             (["--guard", "sd15"], "PART=SECONDS")])
def test_bad_options_name_the_fix(option, message, capsys):
    with pytest.raises(SystemExit):
        _driver().parse_args(["--toy", *option])
    assert message in capsys.readouterr().err
