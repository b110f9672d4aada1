"""README.md's Quickstart runs as written: every code block of the section, in order, at a toy size.

Only sizes change, through SIZES below (each entry must match the README, so the two stay in step); the pip lines
are skipped (SKIPPED, with the reason). The commands run in a temporary folder whose src/agsm/shapes/models is a link
to the shipped models, with the venv's `agsm` first on PATH, so a README command that breaks fails this test.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # the venv's bin: its `agsm` is the one under test

# README text -> what the test runs instead: the sizes, nothing else.
SIZES = {
    "--n 2000": "--n 16",                           # training images
    "--train.steps 200": "--train.steps 2",         # optimiser steps
    "--images-per-prompt 4": "--images-per-prompt 1",
    "num_inference_steps=25": "num_inference_steps=2",
    "--per-category 50": "--per-category 1",        # one suite prompt per category
}
# Lines not run, and why.
SKIPPED = {
    "pip install": "installs the package: the test runs inside the installed venv",
}
# What the blocks must do, in this order (the Quickstart's promised sequence).
ORDER = ["pip install -e .", "agsm shapes data", "agsm train", "agsm sample", "agsm.load_soft_tokens",
         "agsm eval shapes"]


def quickstart_blocks(text: str) -> list[tuple[str, str]]:
    """[(language, code)] of the fenced blocks between '## Quickstart' and the next '## ' heading."""
    start = text.index("\n## Quickstart\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def toy(code: str, used: set) -> str:
    for readme, small in SIZES.items():
        if readme in code:
            used.add(readme)
            code = code.replace(readme, small)
    return code


def runnable_bash(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if not any(line.startswith(s) for s in SKIPPED))


def test_the_quickstart_has_its_blocks_in_order():
    blocks = quickstart_blocks(README.read_text())
    assert [lang for lang, _ in blocks] == ["bash", "bash", "bash", "bash", "python", "bash"]
    joined = "\n".join(code for _, code in blocks)
    positions = [joined.find(step) for step in ORDER]
    assert -1 not in positions and positions == sorted(positions), dict(zip(ORDER, positions))


@pytest.mark.timeout(600)
def test_the_readme_quickstart_runs_as_written(tmp_path, monkeypatch):
    models = tmp_path / "src" / "agsm" / "shapes" / "models"
    models.parent.mkdir(parents=True)
    models.symlink_to(ROOT / "src" / "agsm" / "shapes" / "models", target_is_directory=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    monkeypatch.chdir(tmp_path)
    used: set = set()
    for lang, code in quickstart_blocks(README.read_text()):
        code = toy(code, used)
        if lang == "bash":
            script = runnable_bash(code)
            done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, f"README command failed:\n{script}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        else:
            assert lang == "python", lang
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            exec(compile(code, "README.md Quickstart", "exec"), {"__name__": "__quickstart__"})
    assert used == set(SIZES), f"SIZES entries no longer in the README: {sorted(set(SIZES) - used)}"
    assert (tmp_path / "runs" / "quickstart" / "soft_tokens.safetensors").is_file()
    assert (tmp_path / "runs" / "quickstart-eval" / "results.json").is_file()
