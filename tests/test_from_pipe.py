"""Tokens follow the denoiser, not the pipeline object: pipelines that share a UNet / transformer (diffusers'
`from_pipe`, `components=`, built by hand) list, scale, switch and unload the same adapters, a load through
any of them replaces rather than stacks, and `uncond_tokens` follows the guidance of the pipeline drawing."""
import logging

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from token_file_helpers import PROMPTS, fresh_pipeline, images, write_token_file

from agsm import (list_soft_tokens, load_soft_tokens, set_soft_tokens_adapter, set_soft_tokens_scale,
                  unload_soft_tokens)
from agsm.pipelines import denoiser_of
from agsm.tokens import TokenProcessor

# (fixture of the saved tiny pipeline, the diffusers class a copy is made with from_pipe)
COPIES = [("sd15_dir", "StableDiffusionImg2ImgPipeline"), ("sd15_dir", "StableDiffusionInpaintPipeline"),
          ("sdxl_dir", "StableDiffusionXLImg2ImgPipeline"), ("sdxl_dir", "StableDiffusionXLInpaintPipeline"),
          ("sd3_dir", "StableDiffusion3Img2ImgPipeline")]
_SIZE = 32  # the tiny pipelines' default image size
_INIT = Image.fromarray((np.random.default_rng(0).random((_SIZE, _SIZE, 3)) * 255).astype(np.uint8))
_MASK = Image.fromarray(((np.arange(_SIZE)[None, :] >= _SIZE // 2) * 255).astype(np.uint8).repeat(_SIZE, 0))


def draw(pipe, guidance=5.0):
    """Two tiny images: two steps of text-to-image, or of image-to-image (4 steps at strength 0.5) for copies."""
    name = type(pipe).__name__
    if "Img2Img" not in name and "Inpaint" not in name:
        return images(pipe, steps=2)
    extra = {"mask_image": [_MASK] * len(PROMPTS)} if "Inpaint" in name else {}
    return pipe(PROMPTS, image=[_INIT] * len(PROMPTS), strength=0.5, num_inference_steps=4, guidance_scale=guidance,
                generator=torch.Generator().manual_seed(0), output_type="np", **extra).images


def copy_of(pipe, class_name):
    copy = getattr(diffusers, class_name).from_pipe(pipe)
    copy.set_progress_bar_config(disable=True)
    return copy


def stock_images(model_dir, class_name):
    """What a never-loaded pipeline and its from_pipe copy draw."""
    pipe = fresh_pipeline(model_dir)
    return draw(pipe), draw(copy_of(pipe, class_name))


def wrapped_once(pipe) -> bool:
    """Every token-carrying processor is one wrapper around a stock processor (a stacked load nests two)."""
    wrappers = [p for p in denoiser_of(pipe).attn_processors.values() if isinstance(p, TokenProcessor)]
    return bool(wrappers) and not any(isinstance(p.inner, TokenProcessor) for p in wrappers)


@pytest.mark.parametrize("model,copy_class", COPIES)
def test_a_from_pipe_copy_lists_scales_switches_and_unloads_the_same_adapters(model, copy_class, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    stock, stock_copy = stock_images(model_dir, copy_class)
    pipe = fresh_pipeline(model_dir)
    load_soft_tokens(pipe, write_token_file(tmp_path / "first", pipe, seed=1))
    copy = copy_of(pipe, copy_class)
    assert list(list_soft_tokens(copy)) == ["default"] and list_soft_tokens(copy) == list_soft_tokens(pipe)
    with_first = draw(copy)
    assert not np.array_equal(with_first, stock_copy)  # the copy draws with the tokens loaded on the original

    load_soft_tokens(copy, write_token_file(tmp_path / "second", pipe, seed=2), adapter_name="second", scale=0.5)
    assert list_soft_tokens(pipe)["second"].active and list_soft_tokens(pipe)["second"].scale == 0.5
    set_soft_tokens_adapter(pipe, "default")
    assert list_soft_tokens(copy)["default"].active and not list_soft_tokens(copy)["second"].active
    np.testing.assert_array_equal(draw(copy), with_first)
    set_soft_tokens_scale(copy, 0.0)
    assert list_soft_tokens(pipe)["default"].scale == 0.0
    np.testing.assert_array_equal(draw(pipe), stock)
    set_soft_tokens_scale(pipe, 1.0)
    np.testing.assert_array_equal(draw(copy), with_first)

    assert unload_soft_tokens(copy) is True
    assert list_soft_tokens(pipe) == {} and list_soft_tokens(copy) == {}
    assert not unload_soft_tokens(pipe)
    assert not hasattr(pipe, "unload_soft_tokens")  # methods bound to the original went with the last adapter
    np.testing.assert_array_equal(draw(pipe), stock)
    np.testing.assert_array_equal(draw(copy), stock_copy)


@pytest.mark.parametrize("model,copy_class", COPIES)
def test_loading_again_through_the_copy_replaces_and_never_stacks(model, copy_class, request, tmp_path, caplog):
    model_dir = request.getfixturevalue(model)
    pipe = fresh_pipeline(model_dir)
    token_file = write_token_file(tmp_path, pipe)
    load_soft_tokens(pipe, token_file)
    once, copy = draw(pipe), copy_of(pipe, copy_class)
    once_copy = draw(copy)
    with caplog.at_level(logging.INFO):
        load_soft_tokens(copy, token_file)
        again_copy, again = draw(copy), draw(pipe)
    assert "soft tokens 'default': replacing" in caplog.text
    assert "were replaced after the tokens were loaded" not in caplog.text  # the warnings a stacked load gave
    assert wrapped_once(pipe) and list(list_soft_tokens(pipe)) == ["default"]
    np.testing.assert_array_equal(again_copy, once_copy)
    np.testing.assert_array_equal(again, once)  # the original draws as before


@pytest.mark.parametrize("model", ["sd15_dir", "sdxl_dir", "sd3_dir"])
def test_pipelines_built_from_the_same_components_share_the_adapters(model, request, tmp_path):
    model_dir = request.getfixturevalue(model)
    stock = draw(fresh_pipeline(model_dir))
    pipe = fresh_pipeline(model_dir)
    token_file = write_token_file(tmp_path, pipe)
    load_soft_tokens(pipe, token_file)
    with_tokens = draw(pipe)
    by_hand = type(pipe)(**pipe.components)
    by_hand.set_progress_bar_config(disable=True)
    assert list(list_soft_tokens(by_hand)) == ["default"]
    np.testing.assert_array_equal(draw(by_hand), with_tokens)
    load_soft_tokens(by_hand, token_file)
    assert wrapped_once(pipe)
    np.testing.assert_array_equal(draw(pipe), with_tokens)
    assert unload_soft_tokens(by_hand)
    np.testing.assert_array_equal(draw(pipe), stock)
    np.testing.assert_array_equal(draw(by_hand), stock)


@pytest.mark.parametrize("uncond_tokens", ["negative", "none"])
def test_unconditional_branch_follows_the_pipeline_that_draws(sd15_dir, tmp_path, uncond_tokens):
    """Tokens loaded through the original, which never guided (or last drew without guidance), still split the
    copy's guided batch into its branches exactly as tokens loaded through the copy itself do."""
    copy_class = "StableDiffusionImg2ImgPipeline"
    reference = copy_of(fresh_pipeline(sd15_dir), copy_class)
    token_file = write_token_file(tmp_path, reference)
    load_soft_tokens(reference, token_file, uncond_tokens=uncond_tokens)
    expected = draw(reference)
    load_soft_tokens(reference, token_file)  # uncond_tokens='positive'
    assert not np.array_equal(draw(reference), expected)  # the option shows in these images

    pipe = fresh_pipeline(sd15_dir)
    load_soft_tokens(pipe, token_file, uncond_tokens=uncond_tokens)
    copy = copy_of(pipe, copy_class)
    np.testing.assert_array_equal(draw(copy), expected)
    pipe(PROMPTS[:1], num_inference_steps=1, guidance_scale=1.0, output_type="np")  # the original: no guidance
    np.testing.assert_array_equal(draw(copy), expected)
