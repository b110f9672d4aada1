"""Every `agsm train` example in README.md and docs/*.md that names a shipped config or a shipped tiny model runs.

The examples are collected from the fenced code blocks by regex; each runs as written on the shipped tiny models (a
real model path such as /models/sd15 and the placeholder data my_data are replaced by STAND_INS) at a toy budget
(TOY_BUDGET is appended: later options win) in a temporary folder whose src/agsm/shapes/models links to the shipped models, with
the data the examples name made there (data/shapes, runs/pairs: DATA). An example that cannot run here is skipped by
one of SKIP_RULES, whose reason the skip shows (`pytest -rs`), so the list of what is not run stays visible.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agsm.training.config import shipped_configs

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
SHIPPED_MODELS = "src/agsm/shapes/models/"
TOY_BUDGET = ["--train.steps", "1", "--train.images_per_step", "2", "--train.checkpoint_every", "1"]
# An example's real model or data, and the shipped stand-in it runs on here (whole words only).
STAND_INS = {
    "/models/sd15": SHIPPED_MODELS + "sd15-tiny",
    "/models/sdxl": SHIPPED_MODELS + "sdxl-tiny",
    "/models/sd3-medium": SHIPPED_MODELS + "sd3-tiny",
    "my_data": "data/shapes",
}
# (pattern in the example, why it is not run); the first that matches decides.
SKIP_RULES = [
    (r"(^|\s)/models/", "needs a real model part (a tuned denoiser or LoRA under /models/), which does not ship"),
    (r"report_to (wandb|all)", "logs to wandb (an optional extra, and an account)"),
    (r"\.\.\.", "elided arguments ('...'): a fragment, not a command"),
    (r"--data\.captions|--data\.format coco", "needs COCO images and captions"),
    (r"--data\.format hf", "needs a Hugging Face dataset"),
    (r"^(?!.*--model\.path)", "no --model.path: a fragment showing other flags"),
    (r"--help|-h\b", "prints help, trains nothing"),
]


def train_examples() -> list[tuple[str, str]]:
    """[(file:line, command)] of the `agsm train` lines in fenced blocks that name a shipped config or tiny model."""
    names = "|".join(map(re.escape, shipped_configs()))
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        fenced = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("```"):
                fenced = not fenced
            elif fenced and line.lstrip().startswith("agsm train"):
                start, command = i, line.strip()
                while command.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command[:-1] + " " + lines[i].strip()
                if SHIPPED_MODELS in command or re.search(rf"--config[ =]({names})(\s|$)", command):
                    found.append((f"{doc.relative_to(ROOT)}:{start + 1}", command))
            i += 1
    return found


EXAMPLES = train_examples()


def on_shipped_models(command: str) -> str:
    """`command` with its real models and data replaced by STAND_INS."""
    for real, stand_in in STAND_INS.items():
        command = re.sub(rf"(?<![\w/.-]){re.escape(real)}(?![\w/.-])", stand_in, command)
    return command


def skip_reason(command: str) -> str | None:
    command = shlex.join(shlex.split(on_shipped_models(command), comments=True))  # a trailing '# ...' is a comment
    return next((why for pattern, why in SKIP_RULES if re.search(pattern, command)), None)


def make_data(folder: Path) -> None:
    """What the examples read: a ShapesWorld image folder (data/shapes) and preference pairs (runs/pairs)."""
    from agsm.shapes.dataset import write_training_set

    shapes = write_training_set(folder / "data" / "shapes", n=8, seed=1)
    pairs = folder / "runs" / "pairs"
    images = write_training_set(pairs / "images", n=8, seed=2)
    rows = [json.loads(line) for line in (images / "metadata.jsonl").read_text().splitlines()]
    (images / "metadata.jsonl").unlink()
    # Pick-a-Pic rows: the caption of image 2k, that image preferred to image 2k + 1 (a different scene)
    (pairs / "metadata.jsonl").write_text("".join(
        json.dumps({"caption": rows[k]["text"], "jpg_0": f"images/{rows[k]['file_name']}",
                    "jpg_1": f"images/{rows[k + 1]['file_name']}", "label_0": 1}) + "\n"
        for k in range(0, len(rows), 2)))
    assert shapes.is_dir()


def test_the_examples_are_found_and_some_run():
    runnable = [where for where, command in EXAMPLES if skip_reason(command) is None]
    assert len(EXAMPLES) >= 5 and len(runnable) >= 4, EXAMPLES


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where,command", EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_a_doc_train_example_runs(where, command, tmp_path):
    reason = skip_reason(command)
    if reason:
        pytest.skip(f"{where}: {reason}")
    models = tmp_path / "src" / "agsm" / "shapes" / "models"
    models.parent.mkdir(parents=True)
    models.symlink_to(ROOT / "src" / "agsm" / "shapes" / "models", target_is_directory=True)
    make_data(tmp_path)
    args = shlex.split(on_shipped_models(command), comments=True)  # an example's trailing '# ...' is a comment
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*args, *TOY_BUDGET], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"{where}: {command}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    assert list(tmp_path.glob("runs/**/soft_tokens.safetensors")) or list(tmp_path.glob("runs/**/unet")) \
        or list(tmp_path.glob("runs/**/*.safetensors")), f"{where}: the run wrote no weights"
