"""train.report_to and validation images: where logs go, a missing tracker fails early, validation rounds are
at the right steps, repeatable, the base model's at step 0, and leave training exactly as it was."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from agsm.training.config import load_config
from agsm.training.trackers import TrackerUnavailable, log_images
from agsm.training.loop import train

pytestmark = pytest.mark.slow
PROMPTS = '["a red square", "a blue circle", "a green square"]'


def _config(model_dir, data_dir, out, *extra):
    return load_config(None, ["--model.path", str(model_dir), "--data.path", str(data_dir), "--train.output_dir",
                              str(out), "--data.cache_dir", str(Path(out).parent / "cache"), "--train.log_every", "1",
                              "--train.lr", "0.05", "--method.ema_decay", "0.9", *extra])


def _validated(model_dir, data_dir, out, *extra):
    return _config(model_dir, data_dir, out, "--train.validation_prompts", PROMPTS, "--train.validation_every", "2",
                   "--train.validation_steps", "3", "--train.validation_seed", "7", *extra)


def _pixels(path):
    return np.asarray(Image.open(path))


def _rounds(out):
    return sorted(int(p.name.removeprefix("step-")) for p in (out / "validation").iterdir())


@pytest.fixture(scope="module")
def runs(sd15_dir, image_folder, tmp_path_factory):
    """Three runs of 5 steps, seed 0: with validation every 2 steps; the same stopped at step 3 and resumed; and
    one without validation."""
    root = tmp_path_factory.mktemp("validation")
    straight, resumed, plain = root / "straight", root / "resumed", root / "plain"
    train(_validated(sd15_dir, image_folder, straight, "--train.steps", "5", "--train.checkpoint_every", "3"))
    train(_validated(sd15_dir, image_folder, resumed, "--train.steps", "3", "--train.checkpoint_every", "3"))
    train(_validated(sd15_dir, image_folder, resumed, "--train.steps", "5", "--train.checkpoint_every", "3"),
          resume=True)
    train(_config(sd15_dir, image_folder, plain, "--train.steps", "5", "--train.checkpoint_every", "3"))
    return {"straight": straight, "resumed": resumed, "plain": plain, "root": root}


def test_validation_rounds_come_at_the_right_steps_and_repeat_across_runs(runs):
    straight, resumed = runs["straight"], runs["resumed"]
    assert _rounds(straight) == [0, 2, 4, 5]  # the base, every 2 steps, and the last step
    assert _rounds(resumed) == [0, 2, 3, 4, 5]  # step 3 ended its first part
    assert not (runs["plain"] / "validation").exists()
    for step in (0, 2, 4, 5):
        files = sorted(p.name for p in (straight / "validation" / f"step-{step}").glob("*.png"))
        assert files == ["0.png", "1.png", "2.png"]
        for name in files:  # the same seed draws the same images in another run (here, one resumed in between)
            assert np.array_equal(_pixels(straight / "validation" / f"step-{step}" / name),
                                  _pixels(resumed / "validation" / f"step-{step}" / name))
    record = json.loads((straight / "validation" / "step-2" / "run.json").read_text())
    assert [(i["file"], i["prompt"], i["seed"]) for i in record["images"]] == [
        ("0.png", "a red square", 7), ("1.png", "a blue circle", 8), ("2.png", "a green square", 9)]


def test_step_0_is_the_base_model_and_the_last_round_the_run_s_tokens(runs, sd15_dir):
    """As `agsm sample` draws them: without tokens, and with the exported (online) tokens."""
    from agsm.sample import sample

    out, prompts = runs["straight"], json.loads(PROMPTS)
    base = sample(sd15_dir, prompts, runs["root"] / "base", seed=7, steps=3, show_progress=False)
    tuned = sample(sd15_dir, prompts, runs["root"] / "tuned", seed=7, steps=3, tokens=out / "soft_tokens.safetensors",
                   show_progress=False)
    for i in range(3):
        assert np.array_equal(_pixels(out / "validation" / "step-0" / f"{i}.png"), _pixels(base[i]))
        assert np.array_equal(_pixels(out / "validation" / "step-5" / f"{i}.png"), _pixels(tuned[i]))
    assert not all(np.array_equal(_pixels(base[i]), _pixels(tuned[i])) for i in range(3))  # the tokens were used


def test_sd3_validation_draws_what_agsm_sample_draws(sd3_dir, image_folder, tmp_path):
    """The MM-DiT pipeline without T5, whose backbone keeps its zero-token collapse installed."""
    from agsm.sample import sample

    out = tmp_path / "run"
    train(_validated(sd3_dir, image_folder, out, "--train.steps", "1", "--train.checkpoint_every", "100",
                     "--train.report_to", "none", "--train.validation_prompts", '["a red square"]'))
    assert _rounds(out) == [0, 1]
    base = sample(sd3_dir, ["a red square"], tmp_path / "base", seed=7, steps=3, show_progress=False)
    tuned = sample(sd3_dir, ["a red square"], tmp_path / "tuned", seed=7, steps=3,
                   tokens=out / "soft_tokens.safetensors", show_progress=False)
    assert np.array_equal(_pixels(out / "validation" / "step-0" / "0.png"), _pixels(base[0]))
    assert np.array_equal(_pixels(out / "validation" / "step-1" / "0.png"), _pixels(tuned[0]))


def test_validation_images_reach_tensorboard(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["straight"] / "agsm"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["validation/00_a_red_square", "validation/01_a_blue_circle",
                                               "validation/02_a_green_square"]
    assert [e.step for e in events.Images("validation/01_a_blue_circle")] == [0, 2, 4, 5]


def test_validation_leaves_training_and_resume_exactly_as_without_it(runs):
    """Tokens and losses with validation on equal those without it, resumed or not."""
    for name in ("soft_tokens.safetensors", "soft_tokens_ema.safetensors"):
        expected = load_file(runs["plain"] / name)
        for run in ("straight", "resumed"):
            got = load_file(runs[run] / name)
            assert all(torch.equal(got[key], expected[key]) for key in expected), (run, name)
    def losses(out):
        return [(r["step"], r["loss"]) for r in map(json.loads, (out / "train_log.jsonl").open())]

    assert losses(runs["resumed"]) == losses(runs["straight"]) == losses(runs["plain"])
    assert len(losses(runs["plain"])) == 5


def test_report_to_none_writes_no_tensorboard_files_but_validation_images(sd15_dir, image_folder, tmp_path):
    out = tmp_path / "run"
    train(_validated(sd15_dir, image_folder, out, "--train.steps", "1", "--train.checkpoint_every", "100",
                     "--train.report_to", "none"))
    assert not list(out.rglob("events.out.tfevents*"))
    assert _rounds(out) == [0, 1] and (out / "train_log.jsonl").is_file()
    train(_config(sd15_dir, image_folder, out, "--train.steps", "1", "--train.checkpoint_every", "100"), overwrite=True)
    assert list((out / "agsm").rglob("events.out.tfevents*"))  # the default, tensorboard
    assert not (out / "validation").exists()  # --overwrite removed the previous run's images


@pytest.mark.parametrize("report_to,package", [("wandb", "wandb"), ("all", "wandb"), ("tensorboard", "tensorboard")])
def test_a_missing_tracker_package_fails_before_anything_loads(report_to, package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import <package>` fail, as when it is not installed
    config = load_config(None, ["--model.path", str(tmp_path / "no-model"), "--data.path", str(tmp_path / "no-data"),
                                "--train.output_dir", str(tmp_path / "run"), "--train.report_to", report_to])
    with pytest.raises(TrackerUnavailable, match=rf"needs the {package} package.*pip install {package}.*"
                                                 r"train.report_to to '(tensorboard|wandb)' or 'none'"):
        train(config)
    assert not (tmp_path / "run").exists()  # failed before the run folder was claimed, the data read, the model loaded


def test_images_reach_wandb_with_their_prompts_as_captions(monkeypatch):
    """The wandb branch of log_images, with a stand-in for the wandb package and its accelerate tracker."""
    class FakeImage:
        def __init__(self, image, caption):
            self.image, self.caption = image, caption

    class FakeTracker:
        name = "wandb"
        logged = []

        def log(self, values, step):
            self.logged.append((values, step))

    monkeypatch.setitem(sys.modules, "wandb", type(sys)("wandb"))
    sys.modules["wandb"].Image = FakeImage
    tracker = FakeTracker()
    accelerator = type("Accelerator", (), {"trackers": [tracker]})()
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    log_images(accelerator, 4, images, ["a red square", "a blue circle"])
    (values, step), = tracker.logged
    assert step == 4 and [(w.image, w.caption) for w in values["validation"]] == list(
        zip(images, ["a red square", "a blue circle"]))


def test_validation_options_are_checked():
    with pytest.raises(ValueError, match="train.report_to 'mlflow' is not one of"):
        load_config(None, ["--train.report_to", "mlflow"])
    with pytest.raises(ValueError, match="train.validation_every 0 must be >= 1"):
        load_config(None, ["--train.validation_every", "0"])
    with pytest.raises(ValueError, match="holds an empty prompt"):
        load_config(None, ["--train.validation_prompts", '["a cat", " "]'])
