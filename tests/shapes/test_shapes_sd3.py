"""The tiny SD3-architecture ShapesWorld model: its parts, its training math against the stock pipeline and
scheduler, and (once shipped) the trained model itself. Its pretraining runs are in test_shapes_pretraining.py."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import agsm.shapes
from agsm.shapes import sd3_conditioning as cond
from agsm.shapes.pretraining import sd3
from agsm.shapes.pretraining.common import tokenize
from agsm.shapes.pretraining.config import SD15_VAE, SD3Config
from agsm.shapes import tiny_models as tm

MODEL = Path(agsm.shapes.__file__).parent / "models" / "sd3-tiny"
TOY = dict(n_images=16, batch=4, width=32, layers=2, heads=2, text_hidden=16, text_layers=2,
           dual_attention_layers=(0,), checkpoint_every=1, log_every=1)


def _toy_pipeline(seed=0):
    from diffusers import StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tok = tm.build_sd3_tokenizer()
    return StableDiffusion3Pipeline(
        transformer=tm.build_sd3_transformer(16, 32, 2, 2, (0,)), scheduler=tm.build_flow_scheduler(),
        vae=tm.load_frozen_vae(SD15_VAE), text_encoder=tm.build_sd3_text_encoder(tok, 16, 2), tokenizer=tok,
        text_encoder_2=tm.build_sd3_text_encoder(tok, 16, 2), tokenizer_2=tm.build_sd3_tokenizer(),
        text_encoder_3=None, tokenizer_3=None)


def _config(**kw):
    return SD3Config(out_dir="unused", work_dir="unused", **(TOY | kw))


def test_text_encoder_pools_the_end_of_text_state():
    from agsm.shapes.tiny_models import build_tokenizer

    tok = tm.build_sd3_tokenizer()
    assert tok.eos_token_id == len(tok) - 1 != 2 and tok.pad_token_id == tok.eos_token_id
    enc = tm.build_sd3_text_encoder(tok, 16, 2)
    ids = tokenize(tok, ["a red circle to the left of a blue square", "two squares", ""])
    out = enc(ids)
    eos = (ids == tok.eos_token_id).int().argmax(-1)  # the first end-of-text, right after the caption
    assert eos.tolist() == [11, 3, 1]
    expected = enc.text_projection(out.last_hidden_state[torch.arange(3), eos])
    torch.testing.assert_close(out.text_embeds, expected)
    with pytest.raises(ValueError, match="build_sd3_tokenizer"):
        tm.build_sd3_text_encoder(build_tokenizer())  # end-of-text id 2: CLIP's legacy pooling


def test_encode_ids_matches_the_stock_pipeline_encoding():
    pipe = _toy_pipeline()
    prompts = ["a red circle", "three green triangles", ""]
    embeds, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False)
    ids = tokenize(pipe.tokenizer, prompts)
    mine, mine_pooled = cond.encode_ids(pipe.text_encoder, pipe.text_encoder_2, ids, ids,
                                       pipe.transformer.config.joint_attention_dim)
    assert mine.shape == embeds.shape == (3, 16 + cond.T5_TOKENS, 32)
    torch.testing.assert_close(mine, embeds, rtol=0, atol=0)
    torch.testing.assert_close(mine_pooled, pooled, rtol=0, atol=0)


def test_one_collapsed_zero_token_acts_as_the_stock_256():
    """Training carries one zero token and repeats its keys and values; the stock pipeline feeds 256 zeros."""
    pipe = _toy_pipeline()
    prompts = ["a red circle above a blue square", ""]
    with torch.no_grad():
        stock, _, pooled, _ = pipe.encode_prompt(prompts, None, None, do_classifier_free_guidance=False)
        ids = tokenize(pipe.tokenizer, prompts)
        short, _ = cond.encode_ids(pipe.text_encoder, pipe.text_encoder_2, ids, ids, 32, t5_tokens=1)
    transformer = pipe.transformer
    xt, t = torch.randn(2, 4, 8, 8), torch.tensor([100.0, 900.0])
    params = [transformer.context_embedder.weight, transformer.transformer_blocks[1].attn.add_k_proj.weight]

    def run(context, collapse):
        transformer.zero_grad()
        with cond.collapsed_zero_tokens(transformer) if collapse else torch.enable_grad():
            out = transformer(xt, context, pooled, t).sample
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in params]

    (full, full_grads), (collapsed, grads) = run(stock, False), run(short, True)
    torch.testing.assert_close(collapsed, full, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, full_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    uncollapsed, _ = run(short, False)  # the multiplicity matters: one zero token alone is another model
    assert (uncollapsed - full).abs().max() > 100 * (collapsed - full).abs().max()
    assert cond.check_collapse(transformer, short, pooled) < 1e-5
    assert all(not p._forward_hooks for b in transformer.transformer_blocks for p in (b.attn.add_k_proj,))


def _data(n=8, batch_std=0.0):
    tok = tm.build_sd3_tokenizer()
    ids = tokenize(tok, ["a red circle"] * n)
    empty = tokenize(tok, [""])
    mean = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 4, 8, 8).contiguous()
    return {"mean": mean, "std": torch.full_like(mean, batch_std), "ids": [ids, ids], "empty_ids": [empty, empty],
            "scale": 0.5, "shift": 1.0}


def test_draw_batch_is_flow_matching_with_logit_normal_times():
    cfg, data = _config(batch=4000), _data()
    batch = sd3.draw_batch(cfg, 7, data)
    s = batch["timestep"] / 1000
    assert 0 < s.min() and s.max() < 1
    assert abs(s.median().item() - 0.5) < 0.03
    assert abs(((s > 0.2689) & (s < 0.7311)).float().mean().item() - 0.6827) < 0.03  # |logit s| < 1
    x0 = batch["xt"] - s[:, None, None, None] * batch["target"]  # x_t = (1 - s) x0 + s eps, target = eps - x0
    image = x0 / data["scale"] + data["shift"]  # each image's latent is the constant equal to its index
    torch.testing.assert_close(image, image.round(), atol=1e-4, rtol=0)
    dropped = (batch["ids"][0] == data["empty_ids"][0]).all(-1).float().mean().item()
    assert abs(dropped - cfg.caption_dropout) < 0.02
    again, other = sd3.draw_batch(cfg, 7, data), sd3.draw_batch(cfg, 8, data)
    assert torch.equal(again["xt"], batch["xt"]) and not torch.equal(other["xt"], batch["xt"])


def test_training_target_is_the_velocity_the_sampler_integrates():
    sched = tm.build_flow_scheduler()
    sched.set_timesteps(5)
    torch.testing.assert_close(sched.timesteps, sched.sigmas[:-1] * 1000)  # training passes t = 1000 s
    x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for i, t in enumerate(sched.timesteps):
        s, s_next = sched.sigmas[i], sched.sigmas[i + 1]
        xt = (1 - s) * x0 + s * eps
        prev = sched.step(eps - x0, t, xt).prev_sample
        torch.testing.assert_close(prev, (1 - s_next) * x0 + s_next * eps)


def test_sampler_defaults_follow_the_model_then_the_architecture():
    """A pipeline from no folder gets its architecture's sampler (docs/method.md); the shipped sd3-tiny its own."""
    from agsm.shapes.generate import SHAPESWORLD_SAMPLERS, resolve_sampler
    from agsm.backbones.architectures import tiny_sd15_pipeline

    assert resolve_sampler(_toy_pipeline(), None, None) == (28, 4.0)
    assert resolve_sampler(tiny_sd15_pipeline(), None, None) == (30, 7.0)
    assert resolve_sampler(_toy_pipeline(), 3, 0.0) == (3, 0.0)
    shipped = SHAPESWORLD_SAMPLERS["sd3"]
    assert json.loads((MODEL / "sampler.json").read_text())["guidance"] == shipped["guidance"] == 5.0


def test_bad_options_name_the_value():
    with pytest.raises(ValueError, match="batch must be >= 1, got 0"):
        _config(batch=0)
    with pytest.raises(ValueError, match="dual_attention_layers"):
        tm.build_sd3_transformer(layers=2, dual_attention_layers=(3,))
    with pytest.raises(FileNotFoundError, match="no VAE at"):
        tm.load_frozen_vae("/nonexistent/vae")


needs_model = pytest.mark.skipif(
    not (MODEL / "model_index.json").exists(),
    reason=f"no shipped model at {MODEL} yet; train it with `python -m agsm.shapes.pretrain --arch sd3`")


@needs_model
@pytest.mark.slow
def test_shipped_sd3_model_draws_single_objects():
    """Loads offline with the stock pipeline, samples deterministically and draws what single-object prompts name."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    from agsm.shapes.generate import generate
    from agsm.shapes.verify import verify

    pipe = StableDiffusion3Pipeline.from_pretrained(MODEL, text_encoder_3=None, tokenizer_3=None,
                                                    local_files_only=True)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert any(b.attn2 is not None for b in pipe.transformer.transformer_blocks)
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow circle", "a purple square",
               "an orange triangle"] * 2
    seeds = list(range(len(prompts)))
    images = generate(pipe, prompts, seeds)
    assert images[0].size == (64, 64)
    alone = np.asarray(generate(pipe, prompts[:1], seeds[:1])[0], dtype=int)
    assert (np.asarray(generate(pipe, prompts[:1], seeds[:1])[0], dtype=int) == alone).all()  # deterministic
    # Another batch size changes matmul shapes, so float rounding may differ: at most 2 of 255 levels.
    assert np.abs(alone - np.asarray(images[0], dtype=int)).max() <= 2
    correct = [verify(im, p).correct for im, p in zip(images, prompts)]
    assert sum(correct) >= 9, f"{sum(correct)}/12 single-object prompts drawn correctly: {correct}"
    info = json.loads((MODEL / "train_info.json").read_text())
    assert {"command", "seed", "steps", "wall_seconds", "device"} <= set(info)
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size < 25e6, f"the shipped model is {size / 1e6:.1f} MB"
