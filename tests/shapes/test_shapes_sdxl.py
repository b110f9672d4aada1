"""The tiny SDXL-architecture ShapesWorld model: its parts, its training conditioning against the stock pipeline,
a killed pretraining run resumed exactly, the saved pipeline through the stock class, and tokens around it."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import agsm.shapes
from agsm.shapes import tiny_models as tm
from agsm.shapes.pretraining import checkpoint, cli, sdxl
from agsm.shapes.pretraining.common import tokenize
from agsm.shapes.pretraining.config import SD15_VAE, SDXLConfig

MODEL = Path(agsm.shapes.__file__).parent / "models" / "sdxl-tiny"
TOY = dict(n_images=16, batch=4, unet_channels=(16, 32), text_hidden=(16, 16), text_layers=2, checkpoint_every=1,
           log_every=1)
PARTS = ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
         "text_encoder_2/model.safetensors")


def _pretrain(root, **kw):
    return sdxl.pretrain(root / "out", steps=4, seed=0, work_dir=root / "work", command="test", **(TOY | kw))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return _pretrain(tmp_path_factory.mktemp("sdxl"))


def test_unet_has_sdxl_added_conditioning_and_text_width():
    unet = tm.build_sdxl_unet((16, 32), (16, 32))
    assert unet.config.addition_embed_type == "text_time" and unet.config.cross_attention_dim == 48
    # six time ids of SDXL_TIME_DIM each, plus the second encoder's pooled width: what the stock pipeline checks
    assert unet.add_embedding.linear_1.in_features == 6 * tm.SDXL_TIME_DIM + 32


def test_training_conditioning_is_the_stock_pipelines():
    torch.manual_seed(0)
    tok = tm.build_sd3_tokenizer()
    text, text_2 = tm.build_sdxl_text_encoders(tok, (16, 24), 2)
    pipe = sdxl.stock_pipeline(tm.build_sdxl_unet((16, 24), (16, 32)), text, text_2, tok, tm.load_frozen_vae(SD15_VAE))
    assert sdxl.check_stock_conditioning(pipe, ["a red circle", "three green triangles", ""]) < 1e-6
    # the unconditional branch encodes the empty prompt, as 10% caption dropout trains it (not SDXL's zeros)
    negative = pipe.encode_prompt(["a red circle"], device="cpu", do_classifier_free_guidance=True)[1]
    context, _ = sdxl.encode(text, text_2, tokenize(tok, [""]))
    torch.testing.assert_close(negative, context)


def test_batch_noises_vae_latents_on_sds_schedule():
    cfg = SDXLConfig(out_dir="unused", work_dir="unused", **TOY)
    data = {"mean": torch.randn(8, 4, 8, 8), "std": torch.zeros(8, 4, 8, 8), "shift": 0.0, "scale": 0.5,
            "ids": [torch.arange(8)[:, None].expand(8, 16)] * 2, "empty_ids": [torch.full((1, 16), -1)] * 2}
    vae = tm.load_frozen_vae(SD15_VAE)
    recipe = sdxl.SDXLRecipe(cfg, data, tm.build_sd3_tokenizer(), vae)
    a, b = recipe.batch(3), recipe.batch(3)
    assert all(torch.equal(a[k], b[k]) for k in a)  # every draw of a step comes from that step's generator
    abar = recipe.scheduler.alphas_cumprod[a["t"]].view(-1, 1, 1, 1)
    x0 = (a["zt"] - (1 - abar).sqrt() * a["noise"]) / abar.sqrt()
    rows = a["ids"][:, 0]
    kept = rows >= 0
    torch.testing.assert_close(x0[kept], data["mean"][rows[kept]] * 0.5, atol=1e-4, rtol=1e-4)


def test_killed_and_resumed_matches_uninterrupted(straight, tmp_path, monkeypatch):
    real, saves = checkpoint.save_atomic, []

    def dying_save(obj, path):
        real(obj, path)
        saves.append(path)
        if len(saves) == 3:  # the latent cache, then checkpoints at steps 1 and 2
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_atomic", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(tmp_path)
    monkeypatch.setattr(checkpoint, "save_atomic", real)
    assert torch.load(tmp_path / "work" / "sdxl.pt", weights_only=True)["step"] == 2
    resumed = _pretrain(tmp_path)
    for part in PARTS:
        x, y = load_file(straight / part), load_file(resumed / part)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), part
    curves = [json.loads((d / "train_info.json").read_text())["loss_curve"] for d in (straight, resumed)]
    assert curves[0] == curves[1] and [s for s, _ in curves[0]] == [1, 2, 3, 4]


def test_saved_pipeline_loads_offline_through_the_stock_class_and_takes_tokens(straight):
    from diffusers import StableDiffusionXLPipeline

    from agsm.pipelines import load_soft_tokens, unload_soft_tokens
    from agsm.sample import load_pipeline
    from agsm.tokens.token_file import save_tokens
    from agsm.tokens import SoftTokens, placement_for

    pipe = StableDiffusionXLPipeline.from_pretrained(straight, local_files_only=True)
    assert pipe.unet.config.addition_embed_type == "text_time" and not pipe.config.force_zeros_for_empty_prompt
    shipped_vae = load_file(SD15_VAE / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v, pipe.vae.state_dict()[k]) for k, v in shipped_vae.items())  # the frozen copy
    info = json.loads((straight / "train_info.json").read_text())
    assert {"command", "seed", "steps", "wall_seconds", "device", "parameters", "config", "loss_curve"} <= set(info)

    pipe = load_pipeline(straight)
    run = lambda: pipe("two red circles", num_inference_steps=2, output_type="np",  # noqa: E731
                       generator=torch.Generator().manual_seed(0)).images
    stock = run()
    torch.manual_seed(0)
    tokens = SoftTokens(4, pipe.unet.config.cross_attention_dim, num_sets=2, init_std=1.0)
    info = {"family": "unet", "architecture": "sdxl", "token_width": pipe.unet.config.cross_attention_dim,
            "num_train_timesteps": 1000}
    path = save_tokens(straight.parent / "tokens.safetensors", tokens, info, placement_for("unet"), "agsm", {}, 1)
    load_soft_tokens(pipe, path)
    with_tokens = run()
    assert abs(with_tokens - stock).max() > 1e-3
    unload_soft_tokens(pipe)
    assert (run() == stock).all()


def test_cli_takes_sdxl_and_refuses_other_architectures_options(tmp_path):
    args = cli.build_parser().parse_args(["--arch", "sdxl", "--out", str(tmp_path), "--steps", "3", "--lr", "1e-3"])
    assert cli.options(args) == {"steps": 3, "lr": 1e-3}
    args = cli.build_parser().parse_args(["--arch", "sdxl", "--out", str(tmp_path), "--width", "64"])
    with pytest.raises(ValueError, match="--width: only for --arch sd3, and this run is --arch sdxl"):
        cli.options(args)


@pytest.mark.skipif(not (MODEL / "model_index.json").exists(), reason="sdxl-tiny is not trained yet")
def test_shipped_sdxl_model_draws_single_objects(tmp_path):
    from agsm.eval.shapes import evaluate_shapes

    result = evaluate_shapes(MODEL, tmp_path, per_category=4, steps=25)
    assert result["accuracy"]["single_object"] >= 0.75
