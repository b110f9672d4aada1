"""Training end to end on tiny models: loss goes down, a killed run resumes exactly, two processes agree."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from agsm.backbones.factory import load_backbone
from agsm.training.checkpoint import checkpoint_step, latest_checkpoint
from agsm.training.config import load_config
from agsm.data import build_or_load_cache
from agsm.training.denoisers import TokenDenoiser
from agsm.objectives import get_method
from agsm.tokens.token_file import read_tokens, tokens_from_file
from agsm.tokens import install_tokens, placement_for
from agsm.training.batches import build_batch, load_records
from agsm.training.loop import train
from agsm.training.trainables import make_tokens

pytestmark = pytest.mark.slow


def _config(model_dir, data_dir, out, *extra):
    return load_config(None, ["--model.path", str(model_dir), "--data.path", str(data_dir),
                              "--train.output_dir", str(out), "--data.cache_dir", str(Path(out).parent / "cache"),
                              "--train.log_every", "5", "--method.ema_decay", "0.9", *extra])


def _fixed_batch_loss(config, tokens, batches=6):
    """The method's loss on fixed batches and noise, with these tokens as both online and EMA tokens."""
    backbone = load_backbone(config.model.path)
    dataset = build_or_load_cache(load_records(config), backbone, backbone.resolution,
                                  Path(config.data.cache_dir), progress=False)
    placement = placement_for(backbone.family, config.tokens.stages, config.tokens.blocks)
    injector = install_tokens(backbone.denoiser, backbone.family, tokens, placement)
    denoiser = TokenDenoiser(backbone, injector, tokens, tokens)
    total = 0.0
    with torch.no_grad():
        for s in range(batches):
            g = torch.Generator().manual_seed(10_000 + s)
            ids = torch.randperm(dataset.num_images, generator=g)[:4]
            batch = build_batch(dataset, ids, g, Accelerator(cpu=True), config, "cpu")
            total += get_method(config.method.name).step(denoiser, batch, config.method, g)[0].item()
    return total / batches


@pytest.mark.parametrize("model", ["sd15_dir", "sdxl_dir", "sd3_dir"])
def test_short_agsm_run_lowers_its_loss(model, request, image_folder, tmp_path):
    model_dir = request.getfixturevalue(model)
    config = _config(model_dir, image_folder, tmp_path / "run", "--train.steps", "30", "--train.lr", "0.05",
                     "--train.checkpoint_every", "100")
    token_file = train(config)
    torch.manual_seed(config.train.seed)
    initial = make_tokens(config, load_backbone(model_dir))
    trained = tokens_from_file(*read_tokens(token_file))
    before, after = _fixed_batch_loss(config, initial), _fixed_batch_loss(config, trained)
    # A random tiny UNet attends weakly to its context, so tokens can only move the loss a little (about
    # 0.4-0.6% in 30 steps here); the batches and noise are fixed, so any decrease is the optimisation's doing.
    assert after < before * 0.998, (before, after)
    tensors, meta = read_tokens(token_file)
    assert set(tensors) == {"psi_pos", "psi_neg", "time_table"} and meta["step"] == "30"
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert any((tmp_path / "run" / "agsm").rglob("events.out.tfevents*"))  # TensorBoard log


def _agsm_command(config_args):
    return [sys.executable, "-m", "agsm.cli", "train", *config_args]


def _kill_when(proc, ready, what, timeout=240):
    """SIGKILL proc as soon as ready() holds; fail if it ends (or time runs out) first."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"training ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("model", ["sd15_dir", "sdxl_dir", "sd3_dir"])
def test_killed_run_resumes_to_the_same_tokens(model, request, image_folder, tmp_path):
    """kill -9 at several moments (between checkpoints; while writing one, as a torn .tmp folder; just after one),
    resuming each time: the tokens are bit for bit those of the uninterrupted run."""
    args = ["--model.path", str(request.getfixturevalue(model)), "--data.path", str(image_folder), "--data.cache_dir",
            str(tmp_path / "cache"), "--train.steps", "12", "--train.checkpoint_every", "3", "--train.log_every", "2",
            "--method.ema_decay", "0.9", "--train.lr", "0.01"]
    reference = train(load_config(None, args + ["--train.output_dir", str(tmp_path / "straight")]))

    out = tmp_path / "killed"
    command = _agsm_command(args + ["--train.output_dir", str(out)])
    logged = lambda: (out / "train_log.jsonl").read_text().count("\n") if (out / "train_log.jsonl").exists() else 0  # noqa: E731
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, lambda: logged() >= 2, "step 4 was logged")  # mid-interval, past the step-3 checkpoint
    last = latest_checkpoint(out)
    assert last is not None and not (out / "soft_tokens.safetensors").exists()
    torn = last.with_name(f"checkpoint-{checkpoint_step(last) + 3}.tmp")  # a kill during a checkpoint write leaves this
    torn.mkdir()
    (torn / "train_state.safetensors").write_bytes(b"half a file")

    proc = subprocess.Popen(command + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: latest_checkpoint(out) != last, "a new checkpoint was written")  # just after one
    assert "taking over the lock of process" in proc.stderr.read()  # the first run died holding it

    subprocess.run(command + ["--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("soft_tokens.safetensors", "soft_tokens_ema.safetensors"):
        expected, got = load_file(reference.parent / name), load_file(out / name)
        assert all(torch.equal(got[key], expected[key]) for key in expected), name
    losses = lambda folder: [(r["step"], r["loss"]) for r in map(json.loads, (folder / "train_log.jsonl").open())]  # noqa: E731
    assert losses(out) == losses(reference.parent)  # each step logged once, with the uninterrupted run's loss


def test_two_processes_end_with_identical_tokens(sd15_dir, image_folder, tmp_path):
    prefix = tmp_path / "tokens"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(Path(__file__).with_name("multiproc_train.py")), str(prefix),
               "--model.path", str(sd15_dir), "--data.path", str(image_folder), "--data.cache_dir",
               str(tmp_path / "cache"), "--train.output_dir", str(tmp_path / "run"), "--train.steps", "4",
               "--train.images_per_step", "2", "--train.gather_captions", "true", "--train.checkpoint_every", "4"]
    # --cpu alone would start one process (accelerate's simple launcher); torchrun + gloo needs this instead.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = load_file(f"{prefix}-rank0.safetensors"), load_file(f"{prefix}-rank1.safetensors")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key])
    saved = load_file(tmp_path / "run" / "soft_tokens.safetensors")
    torch.testing.assert_close(saved["psi_pos"], rank0["sets"][0])  # the main process saved what all hold


@pytest.mark.parametrize("method,extra", [("softrepa", ["--method.diagonal_weight", "1.0"]), ("dsm", []),
                                          ("agsm", ["--method.bradley_terry", "true"]),
                                          ("agsm", ["--method.gamma_neg", "0"]),
                                          ("agsm", ["--method.shared_tokens", "true", "--method.noise_sharing", "batch"]),
                                          ("agsm", ["--train.mixed_precision", "bf16", "--train.gradient_checkpointing",
                                                    "true", "--tokens.init", "empty_prompt"])])
def test_every_method_and_ablation_trains(method, extra, sd15_dir, image_folder, tmp_path):
    config = _config(sd15_dir, image_folder, tmp_path / "run", "--method.name", method, "--train.steps", "3",
                     "--train.checkpoint_every", "100", *extra)
    tensors, meta = read_tokens(train(config))
    assert meta["method"] == method
    assert ("psi_neg" in tensors) == (config.method.num_token_sets == 2)


def test_coco_captions_train(sd15_dir, image_folder, tmp_path):
    """COCO layout: an image folder plus a captions json with several captions per image."""
    import json

    names = sorted(p.name for p in image_folder.glob("*.png"))[:8]
    captions = [json.loads(line)["text"] for line in (image_folder / "metadata.jsonl").read_text().splitlines()[:8]]
    coco = {"images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
            "annotations": [{"id": 10 * i + j, "image_id": i, "caption": c if j == 0 else f"{c} on white"}
                            for i, c in enumerate(captions) for j in range(2)]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    config = _config(sd15_dir, image_folder, tmp_path / "run", "--data.format", "coco", "--data.captions",
                     str(tmp_path / "captions.json"), "--train.steps", "2", "--train.checkpoint_every", "100")
    tensors, meta = read_tokens(train(config))
    assert meta["step"] == "2"
