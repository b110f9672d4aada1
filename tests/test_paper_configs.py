"""The shipped configs as paper recipes: one per backbone x method the paper runs, every value with its source named
in a comment, and every config (found by listing src/agsm/configs, so a new one is covered) training two steps on
its architecture at toy width with only what a toy run must change overridden."""
import re
from pathlib import Path

import pytest
from preference_helpers import write_pairs_folder
from safetensors.torch import load_file

from agsm.objectives import get_method
from agsm.training.checkpoint import finished_checkpoints
from agsm.training.config import load_config
from agsm.training.loop import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "agsm" / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
# A config is named <architecture>-<method> (the method part left out for AGSM); the architecture picks the toy model.
MODEL_FIXTURES = {"sd15": "sd15_dir", "sdxl": "sdxl_dir", "sd3": "sd3_dir"}
# What the paper runs (docs/method.md): AGSM and SoftREPA on all three backbones, the preference methods on the UNets.
PAPER_GRID = {**{arch: "agsm" for arch in ("sd15", "sdxl", "sd3")},
              **{f"{arch}-softrepa": "softrepa" for arch in ("sd15", "sdxl", "sd3")},
              **{f"{arch}-{m}": m for arch in ("sd15", "sdxl") for m in ("dpo", "inpo", "spo")}}
# Keys whose value is the user's (paths) or the method itself, so no source applies.
UNSOURCED = {"model.path", "data.path", "data.captions", "train.output_dir", "method.name"}
# A value's comment must name where it comes from: the paper, the authors' public code (or its data layout), or
# "ours" for a setting of this trainer that no recipe fixes (precision, checkpointing, caching).
SOURCE_WORDS = ("paper", "public", "ours", "pick-a-pic")
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>\w+):\s*(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")


def value_comments(path: Path) -> dict[str, str]:
    """{'section.key': its comment} of every key under a section: the comment on its line plus the comment lines
    below it that are indented deeper (a comment continued); a comment opening with '...' goes on from the key
    above's, so it shares that one's source."""
    found, section, last = {}, None, None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            if last is not None and len(line) - len(line.lstrip()) > 0:
                found[last] = f"{found[last]} {line.strip().lstrip('#').strip()}".strip()
            continue
        match = KEY_LINE.match(line)
        assert match, f"{path.name}: cannot read the line {line!r}"
        if not match["indent"]:
            section, last = match["key"], None
            continue
        comment = (match["comment"] or "").strip()
        if comment.startswith("...") and last is not None:
            comment = f"{found[last]} {comment}"
        last = f"{section}.{match['key']}"
        found[last] = comment
    return found


def test_the_paper_grid_ships_one_config_each():
    shipped = {p.stem: load_config(p) for p in CONFIGS}
    missing = sorted(set(PAPER_GRID) - set(shipped))
    assert not missing, f"the paper's backbone x method grid lacks {missing}"
    assert {name: shipped[name].method.name for name in PAPER_GRID} == PAPER_GRID
    for name, config in shipped.items():
        if config.method.name == "agsm":  # the public code's lr floor and EMA start (docs/method.md)
            assert (config.train.min_lr, config.method.ema_init) == (1e-5, "independent"), name


def unsourced_values(path: Path) -> list[str]:
    """The keys of `path` whose comment names no source (with what their comment says)."""
    return [f"{key} ({comment or 'no comment'})" for key, comment in value_comments(path).items()
            if key not in UNSOURCED and not any(word in comment.lower() for word in SOURCE_WORDS)]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_value_names_its_source(path):
    assert value_comments(path), f"{path.name} sets no values"
    unsourced = unsourced_values(path)
    assert not unsourced, (f"{path.name}: name the source of each value in its comment (the paper, the public code, "
                           f"or 'ours' for a trainer setting): {unsourced}")
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert re.search(r"\b[\w.-]+/[\w.-]+\b", header), f"{path.name}: the header names no public repository"


def test_an_unsourced_value_is_caught(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("# a recipe (someone/repo)\ntrain:\n  lr: 1.0e-3   # public train.py ...\n"
                      "  lr_warmup_steps: 5  # ... after 5 steps\n  steps: 10\n"
                      "  min_lr: 0.0  # a floor\n                # public code, continued\n")
    assert value_comments(config) == {"train.lr": "public train.py ...",
                                      "train.lr_warmup_steps": "public train.py ... ... after 5 steps",
                                      "train.steps": "", "train.min_lr": "a floor public code, continued"}
    assert unsourced_values(config) == ["train.steps (no comment)"]
    config.write_text(config.read_text().replace("  steps: 10\n", "  steps: 10  # a guess\n"))
    assert unsourced_values(config) == ["train.steps (a guess)"]


@pytest.fixture(scope="module")
def pairs(image_folder, tmp_path_factory):
    return write_pairs_folder(tmp_path_factory.mktemp("pairs") / "pairs", image_folder, n=8)


def toy_overrides(config, model_dir: Path, data: Path, out: Path) -> list[str]:
    """What a toy run must change: the model, data and run folder, two small steps in float32 with a checkpoint
    after each (of 2 micro-batches where the recipe accumulates), the toy model's own size where the recipe fixes one, and SPO a scorer that ranks any image (the
    tests' brightness stand-in for a step-aware preference model)."""
    overrides = ["--model.path", str(model_dir), "--data.path", str(data), "--train.output_dir", str(out),
                 "--train.steps", "2", "--train.images_per_step", "2", "--train.mixed_precision", "no",
                 "--train.checkpoint_every", "1"]
    if config.model.resolution is not None:  # the recipe's 512 px; the toy images are 32 px
        overrides += ["--model.resolution", "null"]
    if config.train.gradient_accumulation_steps > 1:  # the recipe's accumulation, exercised with 2 micro-batches
        overrides += ["--train.gradient_accumulation_steps", "2"]
    if getattr(config.method, "scorer", None) == "shapes_judge":  # judges ShapesWorld prompts only
        overrides += ["--method.scorer", "preference_helpers:brightness"]
    return overrides


@pytest.mark.slow  # 2-10 s each on one core: SPO samples 20-step trajectories, InPO inverts 10 steps per pair
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_the_config_trains_two_steps_on_its_architecture(path, request, image_folder, pairs, tmp_path):
    architecture = path.stem.split("-")[0]
    assert architecture in MODEL_FIXTURES, (f"{path.name}: name a config <architecture>-<method>.yaml with the "
                                            f"architecture one of {sorted(MODEL_FIXTURES)}")
    recipe = load_config(path)
    data = pairs if recipe.data.format == "pairs" else image_folder
    model_dir, out = request.getfixturevalue(MODEL_FIXTURES[architecture]), tmp_path / "run"
    written = train(load_config(path, toy_overrides(recipe, model_dir, data, out)))

    spec = get_method(recipe.method.name)
    if spec.trains == "tokens":
        assert written == out / "soft_tokens.safetensors" and written.is_file()
    else:  # the tuned denoiser differs from the model's own
        weights = "diffusion_pytorch_model.safetensors"
        tuned, start = load_file(written / weights), load_file(model_dir / written.name / weights)
        assert tuned.keys() == start.keys() and any(not tuned[k].equal(start[k]) for k in start), path.name
    prefix = "tokens." if spec.trains == "tokens" else "params."
    first, second = (load_file(c / "train_state.safetensors") for c in finished_checkpoints(out))
    trained = [k for k in first if k.startswith(prefix)]
    assert trained and any(not first[k].equal(second[k]) for k in trained), f"{path.name}: step 2 moved nothing"
