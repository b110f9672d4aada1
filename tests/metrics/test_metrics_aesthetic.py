"""Aesthetic predictor: head(L2-normalised CLIP image embedding), the head's original key layout loaded strictly."""
import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from agsm.metrics import load_metric
from agsm.metrics.heads import LinearStackHead
from agsm.metrics.preprocess import clip_pixels


@pytest.fixture
def folder(tiny_weights):
    return tiny_weights["aesthetic"]


def test_score_is_the_head_on_the_normalised_image_embedding(folder, images):
    clip = CLIPModel.from_pretrained(folder / "clip").eval()
    state = torch.load(folder / "sac+logos+ava1-l14-linearMSE.pth")
    with torch.no_grad():
        out = clip(pixel_values=clip_pixels(images, 32), input_ids=torch.zeros(1, 3, dtype=torch.long))
        embedding = F.normalize(out.image_embeds, dim=-1)
        x = embedding
        for i in (0, 2, 4, 6, 7):  # the original's Linear layers, no activation between them
            x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    scores = load_metric("aesthetic", folder, progress=False).score(images)
    torch.testing.assert_close(scores, x.squeeze(-1), rtol=1e-5, atol=1e-5)


def test_head_layout_is_the_original_sequential():
    keys = list(LinearStackHead().state_dict())
    assert keys == [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]
    assert [type(m).__name__ for m in LinearStackHead().layers] == ["Linear", "Dropout"] * 3 + ["Linear", "Linear"]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("layers.6.bias"), "missing 1: layers.6.bias"),
    (lambda s: s.update({"layers.1.weight": torch.zeros(1)}), "unexpected 1: layers.1.weight")])
def test_a_wrong_head_file_is_refused_naming_the_key(folder, tmp_path, edit, message):
    copy = shutil.copytree(folder, tmp_path / "aesthetic")
    state = torch.load(copy / "sac+logos+ava1-l14-linearMSE.pth")
    edit(state)
    torch.save(state, copy / "sac+logos+ava1-l14-linearMSE.pth")
    with pytest.raises(ValueError, match=message):
        load_metric("aesthetic", copy)


def test_a_head_for_another_embedding_width_is_refused(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "aesthetic")
    torch.save(LinearStackHead((768, 1024, 128, 64, 16, 1)).state_dict(), copy / "sac+logos+ava1-l14-linearMSE.pth")
    with pytest.raises(ValueError, match="expects 768-d embeddings but the CLIP in .* gives 16-d"):
        load_metric("aesthetic", copy)
