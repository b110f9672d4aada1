"""The shared interface: names, loading errors that name the path and the source, batching, input checks."""
import pytest
import torch

from agsm.metrics import METRIC_NAMES, ImageTextMetric, load_metric

SOURCES = {"clip": "openai/clip-vit-large-patch14", "pickscore": "yuvalkirstain/PickScore_v1",
           "imagereward": "THUDM/ImageReward", "hpsv2": "xswu/HPSv2", "aesthetic": "improved-aesthetic-predictor"}


def test_names():
    assert METRIC_NAMES == ("clip", "pickscore", "imagereward", "hpsv2", "aesthetic")


def test_unknown_metric_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown metric 'fid'.*clip, pickscore"):
        load_metric("fid", tmp_path)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_every_metric_scores_one_float32_per_image_on_the_cpu(name, tiny_weights, images, prompts):
    metric = load_metric(name, tiny_weights[name], progress=False)
    assert isinstance(metric, ImageTextMetric) and metric.name == name
    scores = metric.score(images, prompts)
    assert scores.shape == (len(images),) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert torch.isfinite(scores).all()
    assert scores.std() > 0  # the tiny models still tell inputs apart


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_batching_does_not_change_scores(name, tiny_weights, images, prompts):
    one = load_metric(name, tiny_weights[name], batch_size=1, progress=False).score(images, prompts)
    many = load_metric(name, tiny_weights[name], batch_size=3, progress=False).score(images, prompts)
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_missing_folder_names_the_path_and_the_source(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_metric(name, missing)
    assert str(missing) in str(err.value) and SOURCES[name] in str(err.value)


@pytest.mark.parametrize("name, part, source", [
    ("imagereward", "ImageReward.pt", "THUDM/ImageReward"), ("imagereward", "med_config.json", "THUDM/ImageReward"),
    ("imagereward", "tokenizer", "google-bert/bert-base-uncased"), ("hpsv2", "HPS_v2.1_compressed.pt", "xswu/HPSv2"),
    ("hpsv2", "clip", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    ("aesthetic", "sac+logos+ava1-l14-linearMSE.pth", "improved-aesthetic-predictor"),
    ("aesthetic", "clip", "openai/clip-vit-large-patch14"), ("pickscore", "processor", "laion/CLIP-ViT-H-14")])
def test_missing_part_names_the_expected_file_and_the_source(name, part, source, tiny_weights, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_weights[name], tmp_path / name)
    target = folder / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_metric(name, folder)
    assert str(target) in str(err.value) and source in str(err.value)


def test_mapping_form_gives_the_same_scores_and_checks_its_keys(tiny_weights, images, prompts):
    folder = tiny_weights["hpsv2"]
    parts = {"checkpoint": folder / "HPS_v2.1_compressed.pt", "clip": folder / "clip"}
    as_folder = load_metric("hpsv2", folder, progress=False).score(images, prompts)
    as_mapping = load_metric("hpsv2", parts, progress=False).score(images, prompts)
    torch.testing.assert_close(as_folder, as_mapping)
    with pytest.raises(ValueError, match=r"unknown part\(s\) \['model'\]"):
        load_metric("hpsv2", {**parts, "model": folder})
    with pytest.raises(ValueError, match=r"lacks part\(s\) \['clip'\]"):
        load_metric("hpsv2", {"checkpoint": parts["checkpoint"]})


def test_input_checks(tiny_weights, images, prompts):
    metric = load_metric("clip", tiny_weights["clip"], progress=False)
    with pytest.raises(ValueError, match="5 images but 4 prompts"):
        metric.score(images, prompts[:4])
    with pytest.raises(ValueError, match="needs one prompt per image"):
        metric.score(images)
    with pytest.raises(TypeError, match=r"images\[1\] is a str"):
        metric.score([images[0], "x.png"], prompts[:2])
    assert metric.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        load_metric("clip", tiny_weights["clip"], batch_size=0)
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        load_metric("clip", tiny_weights["clip"], dtype="float8")


def test_aesthetic_needs_no_prompts(tiny_weights, images, prompts):
    metric = load_metric("aesthetic", tiny_weights["aesthetic"], progress=False)
    torch.testing.assert_close(metric.score(images), metric.score(images, prompts))


def test_bfloat16_runs_close_to_float32(tiny_weights, images, prompts):
    full = load_metric("pickscore", tiny_weights["pickscore"], progress=False).score(images, prompts)
    half = load_metric("pickscore", tiny_weights["pickscore"], dtype="bfloat16", progress=False).score(images, prompts)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.3)
