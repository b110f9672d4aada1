"""ImageReward: the original BLIP key layout loads strictly onto transformers' Blip modules; the score equals the
reward computed step by step through those modules."""
import json
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from agsm.metrics import load_metric
from agsm.metrics.imagereward import load_blip
from agsm.metrics.preprocess import clip_pixels


@pytest.fixture
def folder(tiny_weights):
    return tiny_weights["imagereward"]


def test_original_keys_land_on_the_blip_modules(folder):
    state = torch.load(folder / "ImageReward.pt")
    vision, text, head = load_blip(folder / "ImageReward.pt", folder / "med_config.json")
    ve, te = "blip.visual_encoder.", "blip.text_encoder."
    pairs = [(vision.embeddings.class_embedding, ve + "cls_token"),
             (vision.embeddings.position_embedding, ve + "pos_embed"),
             (vision.embeddings.patch_embedding.weight, ve + "patch_embed.proj.weight"),
             (vision.encoder.layers[1].self_attn.qkv.weight, ve + "blocks.1.attn.qkv.weight"),
             (vision.encoder.layers[1].self_attn.projection.bias, ve + "blocks.1.attn.proj.bias"),
             (vision.encoder.layers[0].layer_norm2.weight, ve + "blocks.0.norm2.weight"),
             (vision.encoder.layers[0].mlp.fc1.weight, ve + "blocks.0.mlp.fc1.weight"),
             (vision.post_layernorm.bias, ve + "norm.bias"),
             (text.embeddings.word_embeddings.weight, te + "embeddings.word_embeddings.weight"),
             (text.encoder.layer[1].crossattention.self.key.weight,
              te + "encoder.layer.1.crossattention.self.key.weight"),
             (text.encoder.layer[0].attention.output.LayerNorm.bias,
              te + "encoder.layer.0.attention.output.LayerNorm.bias"),
             (text.encoder.layer[1].output.dense.weight, te + "encoder.layer.1.output.dense.weight"),
             (head.layers[7].weight, "mlp.layers.7.weight"), (head.layers[0].bias, "mlp.layers.0.bias")]
    for tensor, key in pairs:
        assert torch.equal(tensor, state[key]), key
    assert text.encoder.layer[0].crossattention.self.key.weight.shape == (32, 128)  # reads the ViT's 128-d tokens


def test_score_is_the_normalised_head_output_on_the_cls_state(folder, images, prompts):
    vision, text, head = load_blip(folder / "ImageReward.pt", folder / "med_config.json")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")  # longest padding; the metric pads to 35
    with torch.no_grad():
        image_tokens = vision(pixel_values=clip_pixels(images, 32)).last_hidden_state
        mask = torch.ones(image_tokens.shape[:2], dtype=torch.long)
        cls = text(**tokens, encoder_hidden_states=image_tokens, encoder_attention_mask=mask).last_hidden_state[:, 0]
        expected = (head(cls).squeeze(-1) - 0.16717362830052426) / 1.0333394966054072
    scores = load_metric("imagereward", folder, progress=False).score(images, prompts)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_the_unused_original_keys_are_optional(folder, tmp_path, images, prompts):
    copy = shutil.copytree(folder, tmp_path / "ir")
    state = torch.load(copy / "ImageReward.pt")
    for key in ("blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias",
                "blip.text_encoder.embeddings.position_ids"):
        del state[key]
    torch.save(state, copy / "ImageReward.pt")
    expected = load_metric("imagereward", folder, progress=False).score(images, prompts)
    torch.testing.assert_close(load_metric("imagereward", copy, progress=False).score(images, prompts), expected)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("blip.text_encoder.encoder.layer.1.crossattention.self.value.bias"),
     "missing 1: blip.text_encoder.encoder.layer.1.crossattention.self.value.bias"),
    (lambda s: s.update({"blip.itm_head.weight": torch.zeros(2, 32)}), "unexpected 1: blip.itm_head.weight"),
    (lambda s: s.pop("blip.visual_encoder.cls_token"), r"lacks \['blip.visual_encoder.cls_token'\]")])
def test_a_wrong_checkpoint_is_refused_naming_the_key(folder, tmp_path, edit, message):
    copy = shutil.copytree(folder, tmp_path / "ir")
    state = torch.load(copy / "ImageReward.pt")
    edit(state)
    torch.save(state, copy / "ImageReward.pt")
    with pytest.raises(ValueError, match=message):
        load_metric("imagereward", copy)


def test_a_med_config_without_cross_attention_is_refused(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "ir")
    med = json.loads((copy / "med_config.json").read_text())
    del med["add_cross_attention"]
    (copy / "med_config.json").write_text(json.dumps(med))
    with pytest.raises(ValueError, match="med_config.json has no add_cross_attention"):
        load_metric("imagereward", copy)


def test_prompts_longer_than_35_tokens_are_truncated_like_the_original(folder, images):
    metric = load_metric("imagereward", folder, progress=False)
    long = "a red circle " * 20
    truncated = metric.score(images[:1], [long])
    assert torch.isfinite(truncated).all()
    ids = metric.tokenizer(long, truncation=True, max_length=35)["input_ids"]
    assert len(ids) == 35
    torch.testing.assert_close(truncated, metric.score(images[:1], [metric.tokenizer.decode(ids[1:-1])]))
