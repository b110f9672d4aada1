"""Saved tokens in freshly loaded stock pipelines: they change images; removal restores them."""
import numpy as np
import pytest

from token_file_helpers import fresh_pipeline as _fresh, images as _images, write_token_file

from agsm import load_soft_tokens, unload_soft_tokens


@pytest.mark.parametrize("model", ["sd15_dir", "sdxl_dir", "sd3_dir"])
def test_tokens_change_images_and_removal_restores(model, request, tmp_path):
    path = request.getfixturevalue(model)
    untouched = _images(_fresh(path))
    pipe = _fresh(path)
    token_file = write_token_file(tmp_path, pipe)
    load_soft_tokens(pipe, token_file)
    with_tokens = _images(pipe)
    assert np.abs(with_tokens - untouched).max() > 1e-3
    assert unload_soft_tokens(pipe)
    np.testing.assert_array_equal(_images(pipe), untouched)


def test_unconditional_branch_options(sd15_dir, tmp_path):
    pipe = _fresh(sd15_dir)
    token_file = write_token_file(tmp_path, pipe)
    results = {}
    for mode in ("positive", "negative", "none"):
        load_soft_tokens(pipe, token_file, uncond_tokens=mode)
        results[mode] = _images(pipe)
    unload_soft_tokens(pipe)
    assert np.abs(results["positive"] - results["negative"]).max() > 1e-4
    assert np.abs(results["positive"] - results["none"]).max() > 1e-4


def test_wrong_architecture_is_refused_naming_both(sd15_dir, sdxl_dir, tmp_path):
    token_file = write_token_file(tmp_path, _fresh(sd15_dir))
    pipe = _fresh(sdxl_dir)
    with pytest.raises(ValueError, match=r"made for sd15 .*token width 32.* this model is sdxl .*token width 64"):
        load_soft_tokens(pipe, token_file)
    assert not hasattr(pipe, "_agsm_tokens")  # nothing was changed


def test_negative_branch_needs_psi_minus(sd15_dir, tmp_path):
    pipe = _fresh(sd15_dir)
    with pytest.raises(ValueError, match="needs psi-"):
        load_soft_tokens(pipe, write_token_file(tmp_path, pipe, num_sets=1), uncond_tokens="negative")


def test_not_a_token_file_is_refused(sd15_dir, tmp_path):
    bogus = tmp_path / "soft_tokens.safetensors"
    bogus.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_soft_tokens(_fresh(sd15_dir), bogus)
    with pytest.raises(FileNotFoundError, match="no soft token file"):
        load_soft_tokens(_fresh(sd15_dir), tmp_path / "missing")


def test_sd3_branch_options_and_block_count(sd3_dir, tmp_path):
    pipe = _fresh(sd3_dir)
    token_file = write_token_file(tmp_path, pipe)
    load_soft_tokens(pipe, token_file, uncond_tokens="positive")
    positive = _images(pipe)
    load_soft_tokens(pipe, token_file, uncond_tokens="negative")
    assert np.abs(_images(pipe) - positive).max() > 1e-4
    with pytest.raises(ValueError, match="'none' is not supported on SD3"):
        load_soft_tokens(pipe, token_file, uncond_tokens="none")
    (tmp_path / "deep").mkdir()
    too_many = write_token_file(tmp_path / "deep", pipe, blocks=len(pipe.transformer.transformer_blocks) + 1)
    with pytest.raises(ValueError, match="blocks but this transformer has"):
        load_soft_tokens(pipe, too_many)
    assert unload_soft_tokens(pipe) and not hasattr(pipe, "_agsm_tokens")
