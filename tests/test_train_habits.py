"""What a run tells and keeps (issue 27, item 5): the start summary and a line per checkpoint and validation
round, the bar's loss after a resume, the learning-rate schedules (each resumes exactly), random flips and
num_validation_images."""
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agsm.training.config import load_config
from agsm.training.loop import train
from agsm.training.lr_schedules import lr_factor, make_lr_scheduler

pytestmark = pytest.mark.slow


def _config(model_dir, data_dir, out, *extra):
    return load_config(None, ["--model.path", str(model_dir), "--data.path", str(data_dir),
                              "--train.output_dir", str(out), "--data.cache_dir", str(Path(out).parent / "cache"),
                              "--train.log_every", "1", "--method.ema_decay", "0.9", *extra])


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_the_run_logs_its_start_checkpoints_and_validation_rounds(sd15_dir, image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agsm.train")
    out = tmp_path / "run"
    train(_config(sd15_dir, image_folder, out, "--train.steps", "2", "--train.checkpoint_every", "1",
                  "--train.validation_prompts", '["a red square"]', "--train.validation_every", "1",
                  "--train.validation_steps", "1", "--train.validation_seed", "7",
                  "--train.num_validation_images", "2"))
    messages = [r.getMessage() for r in caplog.records if r.name == "agsm.train"]
    start = next(m for m in messages if m.startswith("training "))
    for part in (str(sd15_dir), "(sd15)", "16 images with 16 captions", str(image_folder), "method agsm (",
                 "gamma_pos", "2 steps from step 0", "4 images per step x 1 process", "lr 0.001",
                 "cosine_with_restarts", "device cpu", "dtype float32", f"output {out}"):
        assert part in start, (part, start)
    assert "diagonal_weight" not in start and "beta" not in start  # softrepa's and dpo's options
    for step in (1, 2):
        assert f"step {step}: wrote checkpoint {out / 'checkpoints' / f'checkpoint-{step}'}" in messages
        assert f"step {step}: validation images in {out / 'validation' / f'step-{step}'}" in messages
    record = json.loads((out / "validation" / "step-2" / "run.json").read_text())
    assert [(i["file"], i["prompt"], i["seed"]) for i in record["images"]] == [
        ("0.png", "a red square", 7), ("1.png", "a red square", 8)]  # 2 images of the prompt, 2 seeds
    assert sorted(p.name for p in (out / "validation" / "step-0").glob("*.png")) == ["0.png", "1.png"]


@pytest.fixture
def every_step_printed(monkeypatch):
    """The log-line bar draws at most every 0.5 s (tqdm's mininterval), so on a fast machine a 4-step run prints only
    its first and last line: draw every step, so the lines the tests read exist whatever the machine's speed."""
    import agsm.training.loop as loop_module
    from agsm.utils.progress import progress

    monkeypatch.setattr(loop_module, "progress", lambda *args, **kwargs: progress(*args, mininterval=0, **kwargs))


def test_the_bar_shows_the_last_logged_loss_after_a_resume(sd15_dir, image_folder, tmp_path, capsys,
                                                           every_step_printed):
    out = tmp_path / "run"
    train(_config(sd15_dir, image_folder, out, "--train.steps", "2", "--train.checkpoint_every", "2"))
    last = _log(out)[-1]
    capsys.readouterr()
    train(_config(sd15_dir, image_folder, out, "--train.steps", "4", "--train.checkpoint_every", "2",
                  "--train.log_every", "10"), resume=True)
    lines = capsys.readouterr().err.splitlines()
    step_3 = next(line for line in lines if line.startswith("agsm: 3/4"))
    assert f"loss={last['loss']:.4f}" in step_3 and "loss=-" not in "\n".join(lines), step_3


def test_a_new_run_shows_its_first_step_s_loss(sd15_dir, image_folder, tmp_path, capsys, every_step_printed):
    train(_config(sd15_dir, image_folder, tmp_path / "run", "--train.steps", "3", "--train.checkpoint_every", "3",
                  "--train.log_every", "10"))
    step_1 = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("agsm: 1/3"))
    assert "loss=" in step_1 and "loss=-" not in step_1, step_1


class _TC:
    def __init__(self, **kw):
        self.lr, self.min_lr, self.steps, self.restart_every, self.lr_warmup_steps = 0.1, 0.01, 20, 7, 0
        self.lr_scheduler = "cosine_with_restarts"
        self.__dict__.update(kw)


def test_schedules_have_the_shapes_they_name():
    def lrs(tc, n=25):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=tc.lr)
        schedule, seen = make_lr_scheduler(optimizer, tc), []
        for _ in range(n):
            seen.append(schedule.get_last_lr()[0])
            optimizer.step()
            schedule.step()
        return schedule, seen

    default, restarts = lrs(_TC())
    assert type(default).__name__ == "CosineAnnealingWarmRestarts"  # the default is torch's own, as before
    # the closed form used after a warm-up is the same curve
    assert [0.1 * lr_factor(_TC())(s) for s in range(25)] == pytest.approx(restarts, abs=1e-12)
    assert lrs(_TC(lr_scheduler="constant"))[1] == pytest.approx([0.1] * 25)
    _, linear = lrs(_TC(lr_scheduler="linear", lr_warmup_steps=4), 21)
    assert linear[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])  # warm-up: lr (s + 1) / (w + 1), then lr
    assert linear[20] == pytest.approx(0.01) and linear[12] == pytest.approx(0.01 + 0.09 * (1 - 8 / 16))
    _, cosine = lrs(_TC(lr_scheduler="cosine"), 21)
    assert cosine[0] == pytest.approx(0.1) and cosine[10] == pytest.approx(0.055) and cosine[20] == pytest.approx(0.01)


def test_option_checks_name_the_value():
    with pytest.raises(ValueError, match="train.lr_scheduler 'step' is not one of 'constant', 'cosine'"):
        load_config(None, ["--train.lr_scheduler", "step"])
    with pytest.raises(ValueError, match="train.lr_warmup_steps -1 must be >= 0"):
        load_config(None, ["--train.lr_warmup_steps", "-1"])
    with pytest.raises(ValueError, match="train.num_validation_images 0 must be >= 1"):
        load_config(None, ["--train.num_validation_images", "0"])
    with pytest.raises(ValueError, match="data.random_flip and data.center_crop apply to images with captions"):
        load_config(None, ["--data.format", "pairs", "--data.random_flip", "true"])
    config = load_config(None, [])
    assert (config.data.center_crop, config.data.random_flip, config.train.lr_scheduler, config.train.lr_warmup_steps,
            config.train.num_validation_images) == (True, False, "cosine_with_restarts", 0, 1)


def test_a_warm_cosine_run_with_flips_resumes_exactly(sd15_dir, image_folder, tmp_path):
    """train.lr_scheduler cosine with a warm-up, and data.random_flip: stopped at a checkpoint and resumed, the run
    ends with the uninterrupted run's tokens, losses and learning rates."""
    options = ["--train.steps", "6", "--train.checkpoint_every", "3", "--train.lr", "0.01", "--train.min_lr", "0.001",
               "--train.lr_scheduler", "cosine", "--train.lr_warmup_steps", "2", "--data.random_flip", "true"]
    straight, resumed, unflipped = tmp_path / "straight", tmp_path / "resumed", tmp_path / "unflipped"
    config = _config(sd15_dir, image_folder, straight, *options)
    train(config)
    logged = _log(straight)
    factor = lr_factor(config.train)
    assert [r["lr"] for r in logged] == pytest.approx([0.01 * factor(r["step"]) for r in logged])
    assert logged[0]["lr"] == pytest.approx(0.01 * 2 / 3)  # the lr of step 1 (0-based), still warming up

    train(_config(sd15_dir, image_folder, resumed, *options))
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-6")  # as if killed after checkpoint-3
    for name in ("soft_tokens.safetensors", "soft_tokens_ema.safetensors"):
        (resumed / name).unlink()
    train(_config(sd15_dir, image_folder, resumed, *options), resume=True)
    for name in ("soft_tokens.safetensors", "soft_tokens_ema.safetensors"):
        expected, got = load_file(straight / name), load_file(resumed / name)
        assert all(torch.equal(got[key], expected[key]) for key in expected), name
    key = lambda records: [(r["step"], r["loss"], r["lr"]) for r in records]  # noqa: E731 - pairs_per_s is timing
    assert key(_log(resumed)) == key(logged)

    # the flips are drawn: without them the run differs
    train(_config(sd15_dir, image_folder, unflipped, *options[:-2]))
    assert [r["loss"] for r in _log(unflipped)] != [r["loss"] for r in logged]
