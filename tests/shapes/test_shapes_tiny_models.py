"""The word-level tokenizer behaves like CLIP's for the pipeline, and pretraining resumes exactly."""

import torch
from safetensors.torch import load_file

from agsm.shapes import pretrain as pretrain_module
from agsm.shapes.pretrain import pretrain
from agsm.shapes.suite import load_eval_suite
from agsm.shapes.tiny_models import build_tokenizer


def test_tokenizer_pads_with_eos_and_covers_the_grammar(tmp_path):
    tok = build_tokenizer()
    ids = tok("a red circle", padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    assert len(ids) == 16 and ids[0] == tok.bos_token_id and ids[4] == tok.eos_token_id
    assert ids[4:] == [tok.pad_token_id] * 12 and tok.pad_token_id == tok.eos_token_id
    assert tok("a sparkly circle").input_ids[2] == tok.unk_token_id
    for line in load_eval_suite():
        assert tok.unk_token_id not in tok(line["prompt"]).input_ids
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("two blue squares", padding="max_length", max_length=16).input_ids == tok(
        "two blue squares", padding="max_length", max_length=16).input_ids


def _tiny(out, work, **kw):
    return pretrain(out, steps_vae=3, steps_unet=3, seed=0, work_dir=work, command="test", n_images=24,
                    batch_vae=4, batch_unet=8, checkpoint_every=1, vae_channels=(8, 8, 8, 8), unet_channels=(16, 32), **kw)


def test_pretrain_killed_and_resumed_matches_uninterrupted(tmp_path, monkeypatch):
    straight = _tiny(tmp_path / "a", tmp_path / "a-work")
    real_save, saves = pretrain_module._save_atomic, []

    def dying_save(obj, path):
        real_save(obj, path)
        saves.append(path)
        if len(saves) == 5:  # after VAE step 3, the latent cache and UNet step 1
            raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_module, "_save_atomic", dying_save)
    try:
        _tiny(tmp_path / "b", tmp_path / "b-work")
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(pretrain_module, "_save_atomic", real_save)
    resumed = _tiny(tmp_path / "b", tmp_path / "b-work")
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors"):
        a, b = load_file(straight / part), load_file(resumed / part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert (resumed / "train_info.json").exists()
