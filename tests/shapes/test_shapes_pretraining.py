"""The one pretraining trainer on both architectures at toy size: a killed and resumed run equals an uninterrupted
one, a checkpoint made with other settings is refused, sd15 continues from a pipeline and feeds restated captions
and a position-heavy mix when asked, and the one command takes both architectures' options."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import agsm.shapes
from agsm.shapes.grammar import parse_prompt
from agsm.shapes.pretraining import checkpoint, cli, loop, sd3, sd15
from agsm.shapes.pretraining.common import stage_rng, tokenize
from agsm.shapes.pretraining.config import SD15Config

SD15_MODEL = Path(agsm.shapes.__file__).parent / "models" / "sd15-tiny"
SD15_TOY = dict(n_images=24, batch_vae=4, batch_unet=8, checkpoint_every=1, log_every=2, vae_channels=(8, 8, 8, 8),
                unet_channels=(16, 32))
SD15_PARTS = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
              "text_encoder/model.safetensors")
SD3_TOY = dict(n_images=16, batch=4, width=32, layers=2, heads=2, text_hidden=16, text_layers=2,
               dual_attention_layers=(0,), checkpoint_every=1, log_every=1)
SD3_PARTS = ("transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
             "text_encoder_2/model.safetensors")


def _sd15(root, **kw):
    return sd15.pretrain(root / "out", steps_vae=3, steps_unet=3, seed=0, work_dir=root / "work", command="test",
                         **(SD15_TOY | kw))


def _sd3(root, **kw):
    return sd3.pretrain(root / "out", steps=4, seed=0, work_dir=root / "work", command="test", **(SD3_TOY | kw))


@pytest.fixture(scope="module")
def sd15_straight(tmp_path_factory):
    return _sd15(tmp_path_factory.mktemp("sd15"))


@pytest.fixture(scope="module")
def sd3_straight(tmp_path_factory):
    return _sd3(tmp_path_factory.mktemp("sd3"))


def _killed(run, root, monkeypatch, after: int) -> None:
    """Run until the `after`-th file save (checkpoints and latent caches alike), then die as a kill would."""
    real, saves = checkpoint.save_atomic, []

    def dying_save(obj, path):
        real(obj, path)
        saves.append(path)
        if len(saves) == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_atomic", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run(root)
    monkeypatch.setattr(checkpoint, "save_atomic", real)


def _assert_same_weights(a: Path, b: Path, parts) -> None:
    for part in parts:
        x, y = load_file(a / part), load_file(b / part)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), part


def test_sd15_killed_and_resumed_matches_uninterrupted(sd15_straight, tmp_path, monkeypatch):
    _killed(_sd15, tmp_path, monkeypatch, after=5)  # VAE steps 1-3, the latent cache, UNet step 1
    ckpt = torch.load(tmp_path / "work" / "unet.pt", weights_only=True)  # nothing to unpickle
    assert ckpt["step"] == 1 and set(ckpt["models"]) == {"unet", "text", "ema_unet", "ema_text"}
    resumed = _sd15(tmp_path)
    _assert_same_weights(sd15_straight, resumed, SD15_PARTS)
    infos = [json.loads((d / "train_info.json").read_text()) for d in (sd15_straight, resumed)]
    # killed inside a log window (steps 1-2): its losses travelled in the checkpoint, so the curves agree
    assert infos[0]["loss_curve"] == infos[1]["loss_curve"]
    assert [s for s, _ in infos[0]["loss_curve"]["unet"]] == [2, 3]
    assert {"command", "seed", "steps_vae", "steps_unet", "wall_seconds", "config", "parameters",
            "latent_scaling_factor", "machine", "versions"} <= set(infos[1])


def test_sd15_resumes_a_checkpoint_from_before_the_shared_trainer(sd15_straight, tmp_path, monkeypatch):
    """The old unet.pt layout (states at the top level, no settings or losses) still resumes, unchecked."""
    _killed(_sd15, tmp_path, monkeypatch, after=5)
    path = tmp_path / "work" / "unet.pt"
    ckpt = torch.load(path, weights_only=True)
    torch.save(ckpt["models"] | {"opt": ckpt["opt"], "step": ckpt["step"], "wall": ckpt["wall"]}, path)
    _assert_same_weights(sd15_straight, _sd15(tmp_path), SD15_PARTS)


@pytest.mark.slow
def test_sd3_writes_a_stock_pipeline_the_suite_scores(sd3_straight, tmp_path):
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    from agsm.eval.shapes import evaluate_shapes
    from agsm.sample import load_pipeline
    from agsm.shapes.pretraining.config import SD15_VAE

    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_straight, text_encoder_3=None, tokenizer_3=None,
                                                    local_files_only=True)
    assert isinstance(pipe.transformer, SD3Transformer2DModel)
    blocks = pipe.transformer.transformer_blocks
    assert blocks[0].attn2 is not None and blocks[1].attn2 is None  # an SD3.5 dual block, then a plain one
    assert pipe.vae.config.shift_factor == 0.0
    shipped_vae = load_file(SD15_VAE / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v, pipe.vae.state_dict()[k]) for k, v in shipped_vae.items())  # the frozen copy
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)
    info = json.loads((sd3_straight / "train_info.json").read_text())
    assert {"command", "seed", "steps", "wall_seconds", "device", "parameters", "config", "loss_curve"} <= set(info)
    result = evaluate_shapes(sd3_straight, tmp_path / "eval", per_category=1, steps=2, pipe=load_pipeline(sd3_straight))
    assert result["sampler"]["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert len(result["verdicts"]) == 6 and (tmp_path / "eval" / "results.json").exists()


def test_sd3_killed_and_resumed_matches_uninterrupted(sd3_straight, tmp_path, monkeypatch):
    _killed(_sd3, tmp_path, monkeypatch, after=3)  # the latent cache, then checkpoints at steps 1 and 2
    assert torch.load(tmp_path / "work" / "sd3.pt", weights_only=True)["step"] == 2
    resumed = _sd3(tmp_path)
    _assert_same_weights(sd3_straight, resumed, SD3_PARTS)
    curves = [json.loads((d / "train_info.json").read_text())["loss_curve"] for d in (sd3_straight, resumed)]
    assert curves[0] == curves[1] and [s for s, _ in curves[0]] == [1, 2, 3, 4]


def test_resume_refuses_other_settings(sd15_straight, sd3_straight):
    work = sd3_straight.parent / "work"
    with pytest.raises(ValueError, match=r"other settings.*'lr': \(0.0005, 0.001\).*new --work folder"):
        sd3.pretrain(sd3_straight, steps=4, seed=0, work_dir=work, **(SD3_TOY | {"lr": 1e-3}))
    work = sd15_straight.parent / "work"
    with pytest.raises(ValueError, match=r"unet.pt was trained with other settings.*'lr_unet': \(0.0008, 0.001\)"):
        sd15.pretrain(sd15_straight, 3, 3, 0, work_dir=work, **(SD15_TOY | {"lr_unet": 1e-3}))
    with pytest.raises(ValueError, match=r"vae.pt was trained with other settings.*'steps_vae': \(3, 4\)"):
        sd15.pretrain(sd15_straight, 4, 3, 0, work_dir=work, **SD15_TOY)


def test_init_from_starts_at_the_pipelines_weights_and_keeps_its_vae(tmp_path):
    cfg = SD15Config(out_dir="unused", work_dir="unused", init_from=str(SD15_MODEL), n_images=24)
    pixels, captions, restated = sd15.images(cfg)
    cache = {"mean": torch.zeros(24, 4, 8, 8), "std": torch.ones(24, 4, 8, 8), "scaling_factor": 1.0}
    modules = sd15.UNetRecipe(cfg, cache, captions, restated).build()
    for name, folder, file in (("unet", "unet", "diffusion_pytorch_model"), ("text", "text_encoder", "model")):
        shipped = load_file(SD15_MODEL / folder / f"{file}.safetensors")
        state = modules[name].state_dict()
        assert all(torch.equal(v, state[k]) for k, v in shipped.items()), name
    out = sd15.pretrain(tmp_path / "out", 3, 1, 0, work_dir=tmp_path / "work", command="test", n_images=24,
                        batch_unet=4, init_from=str(SD15_MODEL))
    _assert_same_weights(SD15_MODEL, out, SD15_PARTS[1:2])  # the VAE is kept as it was
    assert not (tmp_path / "work" / "vae.pt").exists()
    info = json.loads((out / "train_info.json").read_text())
    assert info["continued_from"]["command"].startswith("python -m agsm.shapes.pretrain")
    assert info["latent_scaling_factor"] == json.loads((SD15_MODEL / "vae" / "config.json").read_text())[
        "scaling_factor"]


def test_restate_share_feeds_the_restated_captions():
    cfg = SD15Config(out_dir="unused", work_dir="unused", n_images=24, batch_unet=64, restate_share=1.0,
                     caption_dropout=0.0)
    _, captions, restated = sd15.images(cfg)
    assert sum(r is not None for r in restated) >= 8  # position scenes and coloured pairs
    cache = {"mean": torch.zeros(24, 4, 8, 8), "std": torch.ones(24, 4, 8, 8), "scaling_factor": 1.0}
    recipe = sd15.UNetRecipe(cfg, cache, captions, restated)
    ids = recipe.batch(5)["ids"]
    idx = torch.randint(24, (64,), generator=stage_rng(0, 3, 5))  # the step's first draw
    expected = [restated[i] or captions[i] for i in idx.tolist()]
    assert torch.equal(ids, tokenize(recipe.tokenizer, expected))
    assert any(restated[i] for i in idx.tolist())
    without = sd15.UNetRecipe(SD15Config(**{**cfg.__dict__, "restate_share": 0.0}), cache, captions, [None] * 24)
    assert torch.equal(without.batch(5)["ids"], tokenize(recipe.tokenizer, [captions[i] for i in idx.tolist()]))


def test_position_repeats_changes_the_category_mix():
    def positions(repeats):
        _, captions, _ = sd15.images(SD15Config(out_dir="", work_dir="", n_images=48, position_repeats=repeats))
        return sum(parse_prompt(c).category == "position" for c in captions)

    assert positions(1) == 8 and positions(3) == 18  # 1 in 6 categories, then 3 in 8


def test_schedule_and_ema_memory():
    assert loop.cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert loop.cosine_lr(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert loop.cosine_lr(100, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert loop.ema_decay_at(0, 0.999) == pytest.approx(0.1) and loop.ema_decay_at(10**6, 0.999) == 0.999


def test_the_command_takes_either_architecture(monkeypatch):
    args = cli.build_parser().parse_args(["--out", "x", "--steps-unet", "5", "--restate-share", "0.5"])
    assert args.arch == "sd15" and cli.options(args) == {"steps_unet": 5, "restate_share": 0.5}
    args = cli.build_parser().parse_args(["--arch", "sd3", "--out", "x", "--steps", "5", "--bf16"])
    assert cli.options(args) == {"steps": 5, "bf16": True}
    assert cli.sd3_command(args, cli.options(args)) == (
        "python -m agsm.shapes.pretrain --arch sd3 --out x --steps 5 --seed 0 --device cpu --batch 256 --bf16 "
        "--lr 0.0005 --n-images 100000 --width 128 --layers 6 --checkpoint-every 1000 --log-every 250 --threads 1")
    with pytest.raises(SystemExit, match="--steps-vae, --init-from: only for --arch sd15"):
        cli.main(["--arch", "sd3", "--out", "x", "--steps-vae", "3", "--init-from", "y"])
    from agsm import cli as agsm_cli
    from agsm.shapes.pretraining import cli as pretrain_cli

    calls = []
    monkeypatch.setattr(pretrain_cli, "main", lambda argv, prog: calls.append((argv, prog)))
    agsm_cli.main(["shapes", "pretrain-sd3", "--out", "x", "--steps", "5"])
    agsm_cli.main(["shapes", "pretrain", "--out", "x"])
    assert calls == [(["--arch", "sd3", "--out", "x", "--steps", "5"], "agsm shapes pretrain-sd3"),
                     (["--out", "x"], "agsm shapes pretrain")]
