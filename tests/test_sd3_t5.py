"""SD3 with its third text encoder, T5 (a two-layer toy: build_pipeline("sd3", "toy", t5=True)): the T5 states reach
the transformer in training, sampling and with tokens loaded; and the T5-free claim of agsm.backbones.t5_free (a
pipeline without T5 is the pipeline whose T5 gives zeros, and one collapsed zero token computes the same) holds
against the stock pipeline with text_encoder_3=None. Token files trained without T5 load into a pipeline with T5.
"""
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from agsm.backbones.architectures import build_pipeline
from agsm.backbones.factory import load_backbone
from agsm.backbones.mmdit import MMDiTBackbone
from agsm.backbones.t5_free import ZERO_TOKENS, fast_sampling, is_t5_free
from agsm.pipelines import load_soft_tokens, unload_soft_tokens
from agsm.sample import load_pipeline, sample
from agsm.training.config import load_config
from agsm.training.loop import train

PROMPTS = ["a red circle", "two blue squares"]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """The toy SD3 with T5; every other weight is sd3_dir's (the same seed, T5 built last)."""
    path = tmp_path_factory.mktemp("models") / "sd3-t5"
    build_pipeline("sd3", "toy", seed=0, t5=True).save_pretrained(path)
    return path


def _train_two_steps(model_dir, data_dir, out):
    return train(load_config(None, ["--model.path", str(model_dir), "--data.path", str(data_dir),
                                    "--train.output_dir", str(out), "--train.steps", "2",
                                    "--train.images_per_step", "2", "--train.checkpoint_every", "100",
                                    "--tokens.blocks", "2"]))


@pytest.fixture(scope="module")
def t5_tokens(t5_dir, image_folder, tmp_path_factory):
    return _train_two_steps(t5_dir, image_folder, tmp_path_factory.mktemp("runs") / "t5")


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 16, 16, generator=g), torch.tensor([700.0, 250.0])


def _scale_t5_output(pipe, factor: float) -> None:
    """T5's last layer norm scales every state: factor 0 makes T5 give zeros, as the T5-free pipeline assumes."""
    with torch.no_grad():
        pipe.text_encoder_3.encoder.final_layer_norm.weight.mul_(factor)


def test_t5_states_reach_the_transformer(t5_dir):
    backbone = load_backbone(t5_dir)
    assert not is_t5_free(backbone.pipe) and not backbone.collapse_zero_tokens  # nothing collapses real T5 states
    x, t = _inputs()
    cond = backbone.encode_text(PROMPTS)
    clip_length = backbone.pipe.tokenizer_max_length
    assert cond.embeds.shape[1] == clip_length + ZERO_TOKENS
    assert cond.embeds[:, clip_length:].abs().amax() > 0  # T5's states, not the zeros of a dropped encoder
    stock = backbone.pipe.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)[0]
    torch.testing.assert_close(cond.embeds, stock)  # the pipeline's own encoding, T5 included
    with torch.no_grad():
        before = backbone.predict(x, t, cond)
        _scale_t5_output(backbone.pipe, 3.0)
        after = backbone.predict(x, t, backbone.encode_text(PROMPTS))
    assert (after - before).abs().amax() > 1e-3


@pytest.mark.slow  # two-step training runs
def test_tokens_train_sample_and_load_with_t5(t5_dir, t5_tokens, tmp_path):
    with safe_open(str(t5_tokens), framework="pt") as f:
        assert f.metadata()["architecture"] == "sd3"
    paths = sample(t5_dir, PROMPTS[:1], tmp_path / "images", tokens=t5_tokens, steps=2, device="cpu")
    assert paths[0].is_file()

    pipe = load_pipeline(t5_dir)
    x, t = _inputs()
    embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)

    def predict():
        with torch.no_grad():
            return pipe.transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds,
                                    pooled_projections=pooled, return_dict=False)[0]

    plain = predict()
    load_soft_tokens(pipe, t5_tokens)
    with_tokens = predict()
    assert (with_tokens - plain).abs().amax() > 1e-4  # the tokens act beside the T5 states
    _scale_t5_output(pipe, 3.0)
    embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)
    assert (predict() - with_tokens).abs().amax() > 1e-3  # and the T5 states still reach the transformer
    unload_soft_tokens(pipe)


def test_sampling_keeps_t5_and_t5_changes_the_images(t5_dir):
    """agsm's sampling adds nothing to a pipeline with T5 (the zero-token collapse is for T5-free ones only), and
    its images follow T5's weights."""
    pipe = load_pipeline(t5_dir)
    with fast_sampling(pipe) as extra:
        assert extra == {}
    args = dict(prompt=PROMPTS[0], num_inference_steps=2, guidance_scale=4.0, output_type="np")
    first = pipe(**args, generator=torch.Generator().manual_seed(0)).images
    _scale_t5_output(pipe, 3.0)
    second = pipe(**args, generator=torch.Generator().manual_seed(0)).images
    assert np.abs(first - second).max() > 1e-3


def test_t5_free_is_zeros_in_the_t5_slot(t5_dir):
    """t5_free.py's claim, against the stock pipeline with text_encoder_3=None: its prediction equals (1) the
    pipeline whose T5 gives zeros and (2) agsm's backbone, which passes one zero token standing for 256."""
    x, t = _inputs(seed=1)
    t5_free = build_pipeline("sd3", "toy", seed=0)
    assert t5_free.text_encoder_3 is None
    embeds, _, pooled, _ = t5_free.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)
    with torch.no_grad():
        stock = t5_free.transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds,
                                    pooled_projections=pooled, return_dict=False)[0]

    zero_t5 = load_backbone(t5_dir)
    _scale_t5_output(zero_t5.pipe, 0.0)
    collapsed = MMDiTBackbone(build_pipeline("sd3", "toy", seed=0))
    assert collapsed.collapse_zero_tokens and collapsed.encode_text(PROMPTS).embeds.shape[1] + 255 == embeds.shape[1]
    with torch.no_grad():
        zero_t5_cond = zero_t5.encode_text(PROMPTS)
        torch.testing.assert_close(zero_t5_cond.embeds, embeds)
        torch.testing.assert_close(zero_t5.predict(x, t, zero_t5_cond), stock)
        torch.testing.assert_close(collapsed.predict(x, t, collapsed.encode_text(PROMPTS)), stock,
                                   rtol=1e-4, atol=1e-5)  # attention sums in another order


@pytest.mark.slow  # two-step training runs
def test_tokens_trained_without_t5_load_into_a_pipeline_with_t5(sd3_dir, t5_dir, t5_tokens, image_folder,
                                                               tmp_path):
    """MM-DiT tokens are appended after the whole context in each joint block, so they do not depend on its length
    or on T5: a T5-free run's tokens load (and act) on the T5 pipeline, and the T5 run's on the T5-free one. Both
    runs trained the same transformer, so both files name its hash."""
    t5_free_tokens = _train_two_steps(sd3_dir, image_folder, tmp_path / "t5-free")
    hashes = []
    for file in (t5_free_tokens, t5_tokens):
        with safe_open(str(file), framework="pt") as f:
            hashes.append(json.loads(f.metadata()["trained_on"])["denoiser_hash"])
    assert hashes[0] == hashes[1]
    x, t = _inputs(seed=2)
    for model, tokens in ((t5_dir, t5_free_tokens), (sd3_dir, t5_tokens)):
        pipe = load_pipeline(model)
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)
        call = dict(hidden_states=x, timestep=t, encoder_hidden_states=embeds, pooled_projections=pooled,
                    return_dict=False)
        with torch.no_grad():
            plain = pipe.transformer(**call)[0]
            load_soft_tokens(pipe, tokens)
            assert (pipe.transformer(**call)[0] - plain).abs().amax() > 1e-4
