"""HPSv2: an open_clip-layout checkpoint lands on the right CLIPModel tensors; score = cos through those modules."""
import shutil

import pytest
import torch
from transformers import CLIPProcessor

from agsm.metrics import load_metric
from agsm.metrics.hps import load_openclip_checkpoint
from agsm.metrics.preprocess import clip_pixels


@pytest.fixture
def hps_folder(tiny_weights):
    return tiny_weights["hpsv2"]


def test_checkpoint_tensors_land_where_open_clip_uses_them(hps_folder):
    state = torch.load(hps_folder / "HPS_v2.1_compressed.pt")["state_dict"]
    model = load_openclip_checkpoint(hps_folder / "HPS_v2.1_compressed.pt", hps_folder / "clip")
    v, t = model.vision_model, model.text_model
    d = model.config.vision_config.hidden_size
    inp = state["visual.transformer.resblocks.1.attn.in_proj_weight"]  # [3D, D], rows q, k, v
    assert torch.equal(v.encoder.layers[1].self_attn.q_proj.weight, inp[:d])
    assert torch.equal(v.encoder.layers[1].self_attn.k_proj.weight, inp[d:2 * d])
    assert torch.equal(v.encoder.layers[1].self_attn.v_proj.bias,
                       state["visual.transformer.resblocks.1.attn.in_proj_bias"][2 * d:])
    assert torch.equal(model.visual_projection.weight, state["visual.proj"].T)  # open_clip: x @ proj
    assert torch.equal(model.text_projection.weight, state["text_projection"].T)
    assert torch.equal(v.embeddings.class_embedding, state["visual.class_embedding"])
    assert torch.equal(v.embeddings.patch_embedding.weight, state["visual.conv1.weight"])
    assert torch.equal(v.pre_layrnorm.bias, state["visual.ln_pre.bias"])
    assert torch.equal(t.embeddings.position_embedding.weight, state["positional_embedding"])
    assert torch.equal(t.encoder.layers[0].mlp.fc2.weight, state["transformer.resblocks.0.mlp.c_proj.weight"])
    assert torch.equal(t.encoder.layers[0].layer_norm1.weight, state["transformer.resblocks.0.ln_1.weight"])
    assert torch.equal(t.final_layer_norm.bias, state["ln_final.bias"])
    assert torch.equal(model.logit_scale, state["logit_scale"])


def test_score_is_cos_of_the_loaded_towers(hps_folder, images, prompts):
    model = load_openclip_checkpoint(hps_folder / "HPS_v2.1_compressed.pt", hps_folder / "clip").eval()
    tokens = CLIPProcessor.from_pretrained(hps_folder / "clip").tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=clip_pixels(images, 32), **tokens)
    cos = out.logits_per_image.diagonal() / model.logit_scale.exp()
    scores = load_metric("hpsv2", hps_folder, progress=False).score(images, prompts)
    torch.testing.assert_close(scores, cos, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("transformer.resblocks.1.ln_2.bias"), "missing 1: transformer.resblocks.1.ln_2.bias"),
    (lambda s: s.update({"visual.attn_pool.weight": torch.zeros(2)}), "unexpected 1: visual.attn_pool.weight"),
    (lambda s: s.update({"visual.proj": torch.zeros(3, 3)}), "does not fit the model described by")])
def test_a_wrong_checkpoint_is_refused_naming_the_key(hps_folder, tmp_path, edit, message):
    folder = shutil.copytree(hps_folder, tmp_path / "hps")
    state = torch.load(folder / "HPS_v2.1_compressed.pt")["state_dict"]
    edit(state)
    torch.save(state, folder / "HPS_v2.1_compressed.pt")  # a bare state dict is accepted too
    with pytest.raises(ValueError, match=message):
        load_metric("hpsv2", folder)


def test_a_ddp_prefixed_bare_state_dict_loads(hps_folder, tmp_path, images, prompts):
    folder = shutil.copytree(hps_folder, tmp_path / "hps")
    state = torch.load(folder / "HPS_v2.1_compressed.pt")["state_dict"]
    torch.save({f"module.{k}": v for k, v in state.items()}, folder / "HPS_v2.1_compressed.pt")
    expected = load_metric("hpsv2", hps_folder, progress=False).score(images, prompts)
    torch.testing.assert_close(load_metric("hpsv2", folder, progress=False).score(images, prompts), expected)


def test_same_embeddings_as_open_clip_when_it_is_installed(hps_folder, images, prompts):
    """Cross-check against open_clip's own forward (skipped where open_clip is not installed, as in CI)."""
    open_clip = pytest.importorskip("open_clip")
    from agsm.metrics.tiny import tiny_clip_model

    config = tiny_clip_model("gelu").config
    vc, tc = config.vision_config, config.text_config
    reference = open_clip.model.CLIP(
        embed_dim=config.projection_dim,
        vision_cfg=dict(image_size=vc.image_size, layers=vc.num_hidden_layers, width=vc.hidden_size,
                        head_width=vc.hidden_size // vc.num_attention_heads, patch_size=vc.patch_size,
                        mlp_ratio=vc.intermediate_size / vc.hidden_size),
        text_cfg=dict(context_length=77, vocab_size=tc.vocab_size, width=tc.hidden_size, heads=tc.num_attention_heads,
                      layers=tc.num_hidden_layers, mlp_ratio=tc.intermediate_size / tc.hidden_size)).eval()
    reference.load_state_dict(torch.load(hps_folder / "HPS_v2.1_compressed.pt")["state_dict"])
    metric = load_metric("hpsv2", hps_folder, progress=False)
    tokens = metric.clip.processor.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        image = reference.encode_image(clip_pixels(images, 32), normalize=True)
        text = reference.encode_text(tokens["input_ids"], normalize=True)
        torch.testing.assert_close(metric.clip.images(images), image, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(metric.clip.texts(prompts), text, rtol=1e-4, atol=1e-5)
