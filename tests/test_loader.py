"""Loading soft tokens the diffusers way: adapter names (load, switch, unload), methods bound to the pipeline,
processors set after loading, and Hugging Face Hub repo ids (through a stand-in for hf_hub_download, no network)."""
import logging

import numpy as np
import pytest

from token_file_helpers import fresh_pipeline, images, write_token_file

from agsm import (list_soft_tokens, load_soft_tokens, set_soft_tokens_adapter,
                  set_soft_tokens_scale, unload_soft_tokens)
from agsm.tokens.token_file import FILE_NAME


@pytest.fixture
def sd15(sd15_dir):
    """A fresh SD1.5 pipeline and its stock images."""
    pipe = fresh_pipeline(sd15_dir)
    return pipe, images(pipe)


def test_adapters_load_switch_and_unload(sd15, tmp_path):
    pipe, stock = sd15
    first = write_token_file(tmp_path / "first", pipe, seed=1)
    second = write_token_file(tmp_path / "second", pipe, seed=2)
    load_soft_tokens(pipe, first)
    with_first = images(pipe)
    load_soft_tokens(pipe, second, adapter_name="second", scale=0.5)
    loaded = list_soft_tokens(pipe)
    assert list(loaded) == ["default", "second"] and loaded["second"].active and not loaded["default"].active
    assert loaded["second"].scale == 0.5 and loaded["default"].path == str(first)
    with_second_half = images(pipe)
    assert np.abs(with_second_half - with_first).max() > 1e-4

    set_soft_tokens_adapter(pipe, "default")
    np.testing.assert_array_equal(images(pipe), with_first)
    set_soft_tokens_scale(pipe, 0.0, adapter_name="second")  # an inactive adapter keeps its scale for later
    np.testing.assert_array_equal(images(pipe), with_first)
    set_soft_tokens_adapter(pipe, None)
    np.testing.assert_array_equal(images(pipe), stock)
    set_soft_tokens_adapter(pipe, "second")
    np.testing.assert_array_equal(images(pipe), stock)  # its scale is 0 now
    set_soft_tokens_scale(pipe, 0.5)
    np.testing.assert_array_equal(images(pipe), with_second_half)

    with pytest.raises(ValueError, match=r"no soft tokens named 'third' are loaded \(loaded: 'default', 'second'\)"):
        set_soft_tokens_adapter(pipe, "third")
    assert unload_soft_tokens(pipe, "second")  # the active one: the pipeline runs stock, 'default' stays loaded
    np.testing.assert_array_equal(images(pipe), stock)
    assert list(list_soft_tokens(pipe)) == ["default"] and not list_soft_tokens(pipe)["default"].active
    set_soft_tokens_adapter(pipe, "default")
    np.testing.assert_array_equal(images(pipe), with_first)
    assert unload_soft_tokens(pipe) and list_soft_tokens(pipe) == {}
    assert not unload_soft_tokens(pipe)
    np.testing.assert_array_equal(images(pipe), stock)


def test_loading_a_name_again_replaces_it(sd15, tmp_path, caplog):
    pipe, _ = sd15
    load_soft_tokens(pipe, write_token_file(tmp_path / "a", pipe, seed=1))
    with_a = images(pipe)
    with caplog.at_level(logging.INFO, logger="agsm.pipelines"):
        load_soft_tokens(pipe, write_token_file(tmp_path / "b", pipe, seed=2))
    assert "soft tokens 'default': replacing" in caplog.text
    assert list(list_soft_tokens(pipe)) == ["default"] and np.abs(images(pipe) - with_a).max() > 1e-4


def test_methods_bound_to_the_pipeline_while_tokens_are_loaded(sd15, tmp_path):
    pipe, stock = sd15
    assert not hasattr(pipe, "set_soft_tokens_scale")
    load_soft_tokens(pipe, write_token_file(tmp_path, pipe), adapter_name="mine")
    pipe.set_soft_tokens_scale(0.0)
    np.testing.assert_array_equal(images(pipe), stock)
    assert pipe.list_soft_tokens()["mine"].scale == 0.0
    assert pipe.unload_soft_tokens()
    assert not hasattr(pipe, "set_soft_tokens_scale") and not hasattr(pipe, "unload_soft_tokens")


def test_processors_set_after_loading_are_wrapped_again_with_a_warning(sd15, tmp_path, caplog):
    from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0

    pipe, stock = sd15
    load_soft_tokens(pipe, write_token_file(tmp_path, pipe))
    with_tokens = images(pipe)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    with caplog.at_level(logging.WARNING, logger="agsm.tokens"):
        np.testing.assert_array_equal(images(pipe), with_tokens)
    assert "were replaced after the tokens were loaded" in caplog.text and "re-installed" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agsm.tokens"):
        images(pipe)
    assert caplog.text == ""  # wrapped again once; no warning on later calls

    pipe.fuse_qkv_projections()
    np.testing.assert_allclose(images(pipe), with_tokens, atol=1e-5)
    assert unload_soft_tokens(pipe)
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in pipe.unet.attn_processors.values())  # the user's
    np.testing.assert_allclose(images(pipe), stock, atol=1e-5)
    pipe.unfuse_qkv_projections()  # brings back the processors it saw when fusing: wrappers of removed tokens
    np.testing.assert_allclose(images(pipe), stock, atol=1e-5)
    load_soft_tokens(pipe, write_token_file(tmp_path, pipe))
    np.testing.assert_allclose(images(pipe), with_tokens, atol=1e-5)


def test_mmdit_processors_set_after_loading_keep_the_scale(sd3_dir, tmp_path, caplog):
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    pipe = fresh_pipeline(sd3_dir)
    load_soft_tokens(pipe, write_token_file(tmp_path, pipe, scale=1.0), scale=0.5)
    half = images(pipe, steps=2)
    pipe.transformer.set_attn_processor(JointAttnProcessor2_0())
    with caplog.at_level(logging.WARNING, logger="agsm.tokens"):
        np.testing.assert_array_equal(images(pipe, steps=2), half)
    assert "re-installed" in caplog.text


@pytest.fixture
def fake_hub(monkeypatch):
    """hf_hub_download replaced: serves files from a dict {(repo_id, subfolder, filename): path}; records calls."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    files, calls = {}, []

    def download(repo_id, filename, *, subfolder=None, revision=None, **kwargs):
        calls.append((repo_id, subfolder, filename, revision))
        if (repo_id, subfolder, filename) not in files:
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(files[(repo_id, subfolder, filename)])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return files, calls


def test_hub_repo_ids_are_fetched_with_hf_hub_download(sd15, tmp_path, fake_hub):
    pipe, _ = sd15
    files, calls = fake_hub
    local = write_token_file(tmp_path / "run", pipe)
    ema = write_token_file(tmp_path / "run", pipe, seed=5, name="soft_tokens_ema.safetensors")
    files[("someone/sd15-tokens", None, FILE_NAME)] = local
    files[("someone/sd15-tokens", "v2", "soft_tokens_ema.safetensors")] = ema
    load_soft_tokens(pipe, tmp_path / "run")
    from_folder = images(pipe)
    load_soft_tokens(pipe, "someone/sd15-tokens")
    np.testing.assert_array_equal(images(pipe), from_folder)
    assert list_soft_tokens(pipe)["default"].source == "someone/sd15-tokens"
    load_soft_tokens(pipe, "someone/sd15-tokens", adapter_name="ema", subfolder="v2",
                     weight_name="soft_tokens_ema.safetensors", revision="main")
    assert calls == [("someone/sd15-tokens", None, FILE_NAME, None),
                     ("someone/sd15-tokens", "v2", "soft_tokens_ema.safetensors", "main")]
    assert np.abs(images(pipe) - from_folder).max() > 1e-4


def test_local_paths_win_and_unreachable_ids_name_the_id(sd15, tmp_path, fake_hub, monkeypatch):
    from huggingface_hub import constants

    pipe, _ = sd15
    _, calls = fake_hub
    write_token_file(tmp_path / "runs" / "demo", pipe)
    monkeypatch.chdir(tmp_path)
    load_soft_tokens(pipe, "runs/demo")  # also a well-formed repo id, but the folder exists
    assert calls == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"no soft token file at runs/missing: it is not a local file or "
                       r"folder, and soft_tokens.safetensors could not be fetched from the Hugging Face Hub repo "
                       r"'runs/missing' \(HF_HUB_OFFLINE is set"):
        load_soft_tokens(pipe, "runs/missing")
    with pytest.raises(FileNotFoundError, match="neither a local file or folder nor a Hugging Face Hub repo id"):
        load_soft_tokens(pipe, tmp_path / "no" / "such" / "folder")
    with pytest.raises(ValueError, match="is a file already"):
        load_soft_tokens(pipe, tmp_path / "runs" / "demo" / FILE_NAME, weight_name="other.safetensors")
    assert len(calls) == 1


def test_sample_command_token_scale(sd15_dir, tmp_path):
    import json

    from agsm.cli import main

    pipe = fresh_pipeline(sd15_dir)
    token_file = write_token_file(tmp_path / "run", pipe)
    common = ["sample", "--model", str(sd15_dir), "--prompt", "a red circle", "--steps", "2", "--device", "cpu"]
    main([*common, "--out", str(tmp_path / "base")])
    main([*common, "--out", str(tmp_path / "zero"), "--tokens", str(token_file), "--token-scale", "0"])
    main([*common, "--out", str(tmp_path / "full"), "--tokens", str(token_file)])
    image = "p0000_i00.png"
    assert (tmp_path / "zero" / image).read_bytes() == (tmp_path / "base" / image).read_bytes()
    assert (tmp_path / "full" / image).read_bytes() != (tmp_path / "base" / image).read_bytes()
    assert json.loads((tmp_path / "zero" / "run.json").read_text())["token_scale"] == 0.0
    with pytest.raises(SystemExit):
        main([*common, "--out", str(tmp_path / "bad"), "--token-scale", "0.5"])  # no --tokens
