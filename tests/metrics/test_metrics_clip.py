"""CLIP score and PickScore equal the formula computed by calling the tiny CLIPModel's forward directly."""
import shutil

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from agsm.metrics import load_metric


def direct_cosine(model_dir, processor_dir, images, prompts):
    """cos(image_i, text_i) from CLIPModel.forward's logits (longest padding, not the wrapper's fixed length)."""
    model, processor = CLIPModel.from_pretrained(model_dir).eval(), CLIPProcessor.from_pretrained(processor_dir)
    inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return out.logits_per_image.diagonal() / model.logit_scale.exp(), model.logit_scale.exp()


def test_clip_score_is_100_cos_clamped_at_zero(tiny_weights, images, prompts):
    cos, _ = direct_cosine(tiny_weights["clip"], tiny_weights["clip"], images, prompts)
    assert (cos > 0).any() and (cos < 0).any(), "the tiny model should exercise both sides of the clamp"
    scores = load_metric("clip", tiny_weights["clip"], progress=False).score(images, prompts)
    torch.testing.assert_close(scores, (100 * cos).clamp(min=0), rtol=1e-5, atol=1e-4)


def test_pickscore_is_logit_scale_times_cos(tiny_weights, images, prompts):
    folder = tiny_weights["pickscore"]
    cos, scale = direct_cosine(folder, folder / "processor", images, prompts)
    scores = load_metric("pickscore", folder, progress=False).score(images, prompts)
    torch.testing.assert_close(scores, scale * cos, rtol=1e-5, atol=1e-5)


def test_pickscore_processor_may_sit_in_the_model_folder_or_be_named(tiny_weights, images, prompts, tmp_path):
    folder = tiny_weights["pickscore"]
    expected = load_metric("pickscore", folder, progress=False).score(images, prompts)
    flat = shutil.copytree(folder, tmp_path / "flat")
    for item in (flat / "processor").iterdir():
        item.rename(flat / item.name)
    (flat / "processor").rmdir()
    torch.testing.assert_close(load_metric("pickscore", flat, progress=False).score(images, prompts), expected)
    named = {"model": folder, "processor": folder / "processor"}
    torch.testing.assert_close(load_metric("pickscore", named, progress=False).score(images, prompts), expected)


def test_a_model_folder_without_config_is_refused_by_name(tiny_weights, tmp_path):
    folder = shutil.copytree(tiny_weights["clip"], tmp_path / "clip")
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"has none of \['config.json'\].*openai/clip-vit-large-patch14"):
        load_metric("clip", folder)
