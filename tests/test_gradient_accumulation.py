"""train.gradient_accumulation_steps: N micro-batches of b images make one optimiser update.

Per-sample objectives (DSM tokens; DPO on a LoRA or the whole denoiser) accumulate to the update of one batch of N x b.
The contrastive ones (AGSM, SoftREPA) keep each micro-batch's own in-batch negatives: their update follows the mean of
the N micro-batch gradients, which is not the gradient of one batch of N x b. Steps, the lr schedule and the EMA count
updates, and a run with accumulation resumes exactly.

Each objective draws its t and noise in batch order from the micro-batch's generator (one t per image by default;
with method.noise_sharing batch, the public code's, one t and noise for the whole batch), so a batch of 2b and two
micro-batches of b draw different noise for the same image: they agree in expectation, not draw by draw. The exact
equivalence needs the same t and noise per image, so these tests replace the draw (a test-only seam) by one seeded from
each image's own latent; the objectives' math is untouched.
"""
import json
import logging
import zlib

import pytest
import torch
from preference_helpers import write_pairs_folder
from safetensors.torch import load_file

from agsm.training import loop
from agsm.training.checkpoint import finished_checkpoints
from agsm.training.config import load_config
from agsm.training.loop import train
from agsm.training.lr_schedules import lr_factor
from agsm.training.run_folder import RunFolderConflict, claim_run_folder

pytestmark = pytest.mark.slow  # each case trains the tiny SD1.5 a few times, one step each (about 2 s a run)

# Float32 tolerances. The two runs add the same per-sample terms in another order (one mean over 2b against the mean
# of two means over b; batched matmuls and convolutions of other shapes), so the update's gradient agrees only to
# float32 rounding: as one vector, to GRADIENT_TOLERANCE relative (measured 1e-6 to 5e-6; a single entry that sums
# many cancelling terms, such as a bias, can be off by a few 1e-4 of its tensor's largest). The trained weights after
# the update: AdamW's first step is lr * g / (|g| + 1e-8) plus weight decay, well conditioned where |g| is far above
# that 1e-8 and far above its own rounding (there the weights agree to WEIGHT_TOLERANCE, i.e. to float32 rounding of
# the weights themselves) but not elsewhere, where a rounding-level difference of g can move the update by up to lr;
# those few entries (measured: under 1%) are only held to that bound.
LR = 1e-3
GRADIENT_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = dict(rtol=1e-5, atol=LR * 1e-4)
CONDITIONED = 1e-6  # |g| above this: the first AdamW step's error is at most lr * 1e-8 / |g|^2 * (error of g)


def _image_seed(latent: torch.Tensor) -> int:
    return zlib.crc32(latent.detach().cpu().contiguous().numpy().tobytes())


def per_image_noise(denoiser, x0, generator, share):
    """objectives/pairs.draw_noise's t [B] and eps [B, ...], drawn per image from that image's own seed."""
    draws = [torch.Generator().manual_seed(_image_seed(latent)) for latent in x0]
    t = torch.cat([denoiser.sample_timesteps(1, g) for g in draws]).to(x0.device)
    eps = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in draws]).to(x0.device, x0.dtype)
    return t, eps


def per_pair_noise(denoiser, b, like, generator):
    """objectives/dpo.draw_pair_noise's t [2B] and eps [2B, ...] (winner, then loser), per pair from its winner's
    seed."""
    draws = [torch.Generator().manual_seed(_image_seed(latent)) for latent in like]
    t = torch.cat([denoiser.sample_timesteps(1, g) for g in draws]).to(like.device)
    eps = torch.stack([torch.randn(like.shape[1:], generator=g) for g in draws]).to(like.device, like.dtype)
    return torch.cat([t, t]), torch.cat([eps, eps])


def _run(model, data, out, images, accumulation, steps=1, *extra):
    config = load_config(None, ["--model.path", str(model), "--data.path", str(data), "--train.output_dir", str(out),
                                "--data.cache_dir", str(out.parent / "cache"), "--train.report_to", "none",
                                "--train.images_per_step", str(images), "--train.gradient_accumulation_steps",
                                str(accumulation), "--train.steps", str(steps), "--train.lr", str(LR),
                                "--train.log_every", "1", *map(str, extra)])
    return train(config)


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten().double() for t in tensors])


def _assert_same_update(got: dict, expected: dict):
    """Gradients and trained weights of one update each (RecordingGuard), to the tolerances stated above."""
    g, e = _flat(got["gradients"]), _flat(expected["gradients"])
    assert e.norm() > 0  # a real update, or every comparison would hold whatever accumulation did
    assert (g - e).norm() <= GRADIENT_TOLERANCE * e.norm(), float((g - e).norm() / e.norm())
    w, v = _flat(got["weights"]), _flat(expected["weights"])
    # Where the first AdamW step is well conditioned: |g| far above its 1e-8 and g's rounding far below |g|; or g
    # exactly 0 in both runs, where the weight only decays, alike.
    conditioned = ((e.abs() > CONDITIONED) & ((g - e).abs() < 1e-2 * e.abs())) | ((g == 0) & (e == 0))
    assert conditioned.float().mean() > 0.9  # nearly all weights get the tight check
    torch.testing.assert_close(w[conditioned], v[conditioned], **WEIGHT_TOLERANCE)
    bound = 2 * LR * (1 + v.abs())  # two first AdamW steps of opposite signs, with weight decay 1e-4 < 1
    assert bool(((w - v).abs() <= bound).all())


class RecordingGuard(loop.StepGuard):
    """The step guard, also keeping each update's gradient as the optimiser is about to apply it, and the trained
    weights it gives (in the trainable's parameter order)."""

    updates: list[dict[str, list[torch.Tensor]]] = []

    def should_skip(self, accelerator, state, loss, trained, batch_files) -> bool:
        RecordingGuard.updates.append({"gradients": [p.grad.clone() for _, p in trained.named_parameters()]})
        return super().should_skip(accelerator, state, loss, trained, batch_files)

    def check_tokens(self, state, trained) -> None:
        RecordingGuard.updates[-1]["weights"] = [p.detach().clone() for _, p in trained.named_parameters()]
        super().check_tokens(state, trained)


def _updates(*run_args) -> list[dict[str, list[torch.Tensor]]]:
    """Each update of _run(*run_args): its gradient and the weights after it (StepGuard patched)."""
    RecordingGuard.updates = []
    _run(*run_args)
    return RecordingGuard.updates


def test_dsm_two_micro_batches_make_the_update_of_one_batch_twice_as_large(sd15_dir, image_folder, tmp_path,
                                                                          monkeypatch, caplog):
    monkeypatch.setattr("agsm.objectives.dsm.draw_noise", per_image_noise)
    monkeypatch.setattr(loop, "StepGuard", RecordingGuard)
    options = ["--method.name", "dsm"]
    with caplog.at_level(logging.INFO, logger="agsm.train"):
        [accumulated_update] = _updates(sd15_dir, image_folder, tmp_path / "accumulated", 2, 2, 1, *options)
    assert "2 images per step x 1 process x 2 accumulated micro-batches (4 images per optimiser step), lr" \
        in caplog.text
    assert "couples its batch" not in caplog.text  # a per-sample loss
    [one_batch_update] = _updates(sd15_dir, image_folder, tmp_path / "one_batch", 4, 1, 1, *options)
    _assert_same_update(accumulated_update, one_batch_update)
    accumulated, one_batch = tmp_path / "accumulated", tmp_path / "one_batch"
    # the logged loss is the mean over the update's micro-batches: the mean over all four images
    assert _log(accumulated)[0]["loss"] == pytest.approx(_log(one_batch)[0]["loss"], rel=1e-6)


@pytest.mark.parametrize("params", ["lora", "full"])
def test_dpo_two_micro_batches_make_the_update_of_one_batch_twice_as_large(params, sd15_dir, image_folder, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr("agsm.objectives.dpo.draw_pair_noise", per_pair_noise)
    monkeypatch.setattr(loop, "StepGuard", RecordingGuard)
    pairs = write_pairs_folder(tmp_path / "pairs", image_folder, n=8)
    options = ["--method.name", "dpo", "--method.beta", "500", "--data.format", "pairs", "--data.caption_column",
               "caption", "--tune.params", params]
    [accumulated_update] = _updates(sd15_dir, pairs, tmp_path / "accumulated", 2, 2, 1, *options)
    [one_batch_update] = _updates(sd15_dir, pairs, tmp_path / "one_batch", 4, 1, 1, *options)
    _assert_same_update(accumulated_update, one_batch_update)
    accumulated, one_batch = tmp_path / "accumulated", tmp_path / "one_batch"
    assert _log(accumulated)[0]["loss"] == pytest.approx(_log(one_batch)[0]["loss"], rel=1e-6)


@pytest.mark.parametrize("method", ["agsm", "softrepa"])
def test_contrastive_accumulation_is_the_mean_of_micro_batches_each_with_its_own_negatives(method, sd15_dir,
                                                                                          image_folder, tmp_path,
                                                                                          monkeypatch, caplog):
    monkeypatch.setattr(f"agsm.objectives.{method}.draw_noise", per_image_noise)
    monkeypatch.setattr(loop, "StepGuard", RecordingGuard)
    options = ["--method.name", method]
    with caplog.at_level(logging.INFO, logger="agsm.train"):
        [accumulated] = _updates(sd15_dir, image_folder, tmp_path / "accumulated", 2, 2, 1, *options)
    # the start line says what accumulation means for this method
    assert f"{method} couples its batch (in-batch negatives" in caplog.text
    assert "each micro-batch is a batch of its own (K = 2 captions)" in caplog.text
    accumulated = _flat(accumulated["gradients"])
    # Two plain steps of b = 2 at lr 0 see the same micro-batches (images, captions, draws) at the same tokens: the
    # accumulated update's gradient is their mean, each computed with only its own two captions as the pool.
    first, second = _updates(sd15_dir, image_folder, tmp_path / "steps", 2, 1, 2, *options, "--train.lr", "0")
    mean = (_flat(first["gradients"]) + _flat(second["gradients"])) / 2
    assert mean.norm() > 0
    assert (accumulated - mean).norm() <= GRADIENT_TOLERANCE * mean.norm()
    # One batch of 4 contrasts each image with all four captions: another loss, another gradient, far beyond
    # float32 rounding (a per-sample loss such as DSM's agrees to GRADIENT_TOLERANCE in the test above).
    [one_batch] = _updates(sd15_dir, image_folder, tmp_path / "one_batch", 4, 1, 1, *options)
    one_batch = _flat(one_batch["gradients"])
    assert (accumulated - one_batch).norm() > 1e-2 * one_batch.norm()


def test_steps_schedule_and_ema_count_updates_and_a_resumed_run_ends_alike(sd15_dir, image_folder, tmp_path,
                                                                           monkeypatch):
    import agsm.training.trainables as trainables

    ema_updates = []
    real_update = trainables.update_ema
    monkeypatch.setattr(trainables, "update_ema", lambda *a: (ema_updates.append(1), real_update(*a)))
    # warm restarts every 3 steps: the lr of step s depends on s alone (not on train.steps, which the resume changes)
    options = ["--train.restart_every", "3", "--train.min_lr", "1e-4", "--train.checkpoint_every", "2",
               "--train.checkpoints_total_limit", "null", "--method.ema_decay", "0.5"]
    straight = _run(sd15_dir, image_folder, tmp_path / "straight", 2, 2, 4, *options).parent
    logged = _log(straight)
    assert [r["step"] for r in logged] == [1, 2, 3, 4] and len(ema_updates) == 4  # once per update, not per micro
    config = load_config(straight / "config.yaml")
    assert config.train.gradient_accumulation_steps == 2  # the resolved config records it
    factor = lr_factor(config.train)
    assert [r["lr"] for r in logged] == pytest.approx([LR * factor(r["step"]) for r in logged])
    assert [p.name for p in finished_checkpoints(straight)] == ["checkpoint-2", "checkpoint-4"]
    state = json.loads((straight / "checkpoints" / "checkpoint-4" / "train_state.json").read_text())
    assert state["schedule"]["last_epoch"] == 4

    # Stopped at its step-2 checkpoint (train.steps may change on resume) and resumed: the uninterrupted run, bit for
    # bit.
    resumed = _run(sd15_dir, image_folder, tmp_path / "resumed", 2, 2, 2, *options).parent
    out = train(load_config(resumed / "config.yaml", ["--train.steps", "4"]), resume=True)
    for name in ("soft_tokens.safetensors", "soft_tokens_ema.safetensors"):
        expected, got = load_file(straight / name), load_file(out.parent / name)
        assert all(torch.equal(got[k], expected[k]) for k in expected), name
    key = lambda records: [(r["step"], r["loss"], r["lr"]) for r in records]  # noqa: E731 - pairs_per_s is timing
    assert key(_log(resumed)) == key(logged)


def test_a_resume_refuses_another_accumulation(tmp_path):
    """Another N changes each update's batch (and which micro-batches a step draws): not the run it continues."""
    (tmp_path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    load_config(None, ["--train.gradient_accumulation_steps", "2"]).save(tmp_path / "config.yaml")
    with pytest.raises(RunFolderConflict, match="train.gradient_accumulation_steps: 2 in the run, 4 now"):
        claim_run_folder(tmp_path, load_config(None, ["--train.gradient_accumulation_steps", "4"]), resume=True,
                         overwrite=False)


def test_the_option_its_diffusers_name_and_accelerates_own_setting(tmp_path, monkeypatch):
    assert load_config(None, []).train.gradient_accumulation_steps == 1
    assert load_config(None, ["--gradient_accumulation_steps", "8"]).train.gradient_accumulation_steps == 8
    with pytest.raises(ValueError, match=r"train.gradient_accumulation_steps 0 must be >= 1"):
        load_config(None, ["--train.gradient_accumulation_steps", "0"])
    # accelerate launch --gradient_accumulation_steps sets this variable; the config's count must be the one used
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "3")
    with pytest.raises(ValueError, match="is 3 but train.gradient_accumulation_steps is 2; set "
                                         "--train.gradient_accumulation_steps"):
        train(load_config(None, ["--train.output_dir", str(tmp_path / "run"), "--train.report_to", "none",
                                 "--train.gradient_accumulation_steps", "2", "--data.path", str(tmp_path)]))
