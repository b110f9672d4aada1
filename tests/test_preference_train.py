"""Preference training end to end on the tiny model: the same trainer, checkpoints and exact resume as soft tokens;
the exported backbone is what `model.denoiser` / `--lora` read, and AGSM tokens stack on it."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from preference_helpers import write_pairs_folder
from safetensors.torch import load_file

from agsm.backbones.variants import BackboneVariant, denoiser_hash
from agsm.training.checkpoint import latest_checkpoint
from agsm.training.config import load_config
from agsm.sample import load_pipeline
from agsm.tokens.token_file import read_tokens
from agsm.training.loop import train

pytestmark = pytest.mark.slow


def _args(model, pairs, *extra):
    return ["--model.path", str(model), "--data.format", "pairs", "--data.path", str(pairs), "--data.caption_column",
            "caption", "--train.images_per_step", "2", "--train.log_every", "1", "--train.lr", "0.001",
            "--train.max_grad_norm", "1.0", *extra]


@pytest.fixture(scope="module")
def pairs(image_folder, tmp_path_factory):
    return write_pairs_folder(tmp_path_factory.mktemp("pairs") / "pairs", image_folder, n=8)


def test_dpo_export_is_a_backbone_agsm_tokens_train_on(sd15_dir, pairs, image_folder, tmp_path):
    run = tmp_path / "dpo"
    config = load_config(None, _args(sd15_dir, pairs, "--method.name", "dpo", "--method.beta", "500",
                                     "--train.steps", "4", "--train.checkpoint_every", "2", "--train.output_dir",
                                     str(run), "--tune.export_pipeline", "true"))
    assert train(config) == run / "unet"
    summary = json.loads((run / "tuned.json").read_text())
    assert summary["trained"] == "lora" and summary["step"] == 4
    tuned = BackboneVariant(denoiser=str(run / "unet"))
    by_lora = BackboneVariant(lora=str(run))
    hashes = {denoiser_hash(load_pipeline(sd15_dir, variant=v)) for v in (tuned, by_lora)}
    hashes.add(denoiser_hash(load_pipeline(run / "pipeline")))
    assert hashes == {summary["denoiser_hash"]} != {denoiser_hash(load_pipeline(sd15_dir))}
    assert (run / "pipeline" / "model_index.json").is_file()

    agsm = load_config(None, ["--model.path", str(sd15_dir), "--model.denoiser", str(run / "unet"), "--data.path",
                              str(image_folder), "--train.steps", "2", "--train.output_dir", str(tmp_path / "agsm"),
                              "--train.checkpoint_every", "100"])
    tensors, meta = read_tokens(train(agsm))
    record = json.loads(meta["trained_on"])
    assert record["denoiser"] == str(run / "unet") and record["denoiser_hash"] == summary["denoiser_hash"]


def test_dpo_is_refused_without_pairs_and_pairs_without_a_preference_method(sd15_dir, pairs, image_folder, tmp_path):
    with pytest.raises(ValueError, match="trains on preference pairs: set data.format pairs"):
        train(load_config(None, ["--model.path", str(sd15_dir), "--data.path", str(image_folder), "--method.name",
                                 "dpo", "--train.output_dir", str(tmp_path / "a")]))
    with pytest.raises(ValueError, match="data.format pairs holds preference pairs"):
        train(load_config(None, _args(sd15_dir, pairs, "--train.output_dir", str(tmp_path / "b"))))


def test_inpo_refuses_a_flow_backbone(sd3_dir, pairs, tmp_path):
    config = load_config(None, _args(sd3_dir, pairs, "--method.name", "inpo", "--train.output_dir", str(tmp_path)))
    with pytest.raises(ValueError, match="needs a UNet backbone"):
        train(config)


@pytest.mark.parametrize("method,model,extra", [
    ("inpo", "sd15_dir", ["--method.inversion_steps", "5", "--tune.params", "full", "--train.lr", "1e-5"]),
    ("spo", "sd15_dir", ["--method.steps", "5", "--method.divert_start", "1", "--method.candidates", "2",
                         "--method.scorer", "preference_helpers:brightness"]),
    ("dpo", "sd15_dir", ["--train.mixed_precision", "bf16", "--train.gradient_checkpointing", "true"]),
    ("dpo", "sdxl_dir", []), ("dpo", "sd3_dir", [])])
def test_each_preference_method_trains(method, model, extra, request, pairs, tmp_path):
    run = tmp_path / method
    model_dir = request.getfixturevalue(model)
    config = load_config(None, _args(model_dir, pairs, "--method.name", method, "--train.steps", "3",
                                     "--train.checkpoint_every", "100", "--train.output_dir", str(run), *extra))
    denoiser = train(config)
    assert (denoiser / "diffusion_pytorch_model.safetensors").is_file()
    if not extra:  # float32: the LoRA loads back onto the stock pipeline as the fused denoiser's equal
        by_lora = load_pipeline(model_dir, variant=BackboneVariant(lora=str(run)))
        assert denoiser_hash(by_lora) == json.loads((run / "tuned.json").read_text())["denoiser_hash"]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    if method == "spo":
        assert sum(r["pairs"] for r in log) > 0  # the scorer ranked candidates into pairs


def _kill_when(proc, ready, what, timeout=240):
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"training ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_dpo_run_resumes_to_the_same_weights(sd15_dir, pairs, tmp_path):
    """kill -9 between checkpoints, resume: the LoRA, the fused UNet and every logged loss are the uninterrupted
    run's, bit for bit."""
    args = _args(sd15_dir, pairs, "--method.name", "dpo", "--method.beta", "500", "--train.steps", "12",
                 "--train.checkpoint_every", "4", "--data.cache_dir", str(tmp_path / "cache"))
    # The uninterrupted run is a process of its own too: the test process's torch thread count may have been changed
    # by earlier tests (the pretraining tests set it), and a weight gradient's rounding depends on the thread count.
    reference = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "agsm.cli", "train", *args, "--train.output_dir", str(reference)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "agsm.cli", "train", *args, "--train.output_dir", str(out)]
    logged = lambda: (out / "train_log.jsonl").read_text().count("\n") if (out / "train_log.jsonl").exists() else 0  # noqa: E731
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: logged() >= 6, "step 6 was logged")  # past the step-4 checkpoint, before step 8's
    assert latest_checkpoint(out) is not None and not (out / "unet").exists()
    subprocess.run(command + ["--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("pytorch_lora_weights.safetensors", "unet/diffusion_pytorch_model.safetensors"):
        expected, got = load_file(reference / name), load_file(out / name)
        assert expected.keys() == got.keys() and all(torch.equal(got[k], expected[k]) for k in expected), name
    losses = lambda folder: [(r["step"], r["loss"]) for r in map(json.loads, (folder / "train_log.jsonl").open())]  # noqa: E731
    assert losses(out) == losses(reference)
