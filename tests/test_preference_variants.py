"""Backbone variants: another denoiser (folder or safetensors file) or a LoRA (fused or attached) on a stock pipeline,
refused when it does not fit; the denoiser's content hash, and the warning for tokens trained on another backbone."""
import logging

import pytest
import torch
from safetensors.torch import save_file
from token_file_helpers import write_token_file

from agsm import load_soft_tokens
from agsm.backbones.variants import BackboneVariant, apply_variant, content_hash, denoiser_hash
from agsm.sample import load_pipeline


@pytest.fixture(scope="module")
def tuned_parts(sd15_dir, tmp_path_factory):
    """A perturbed copy of the fixture's UNet (folder and single file) and a LoRA for it, with the outputs they give."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    root = tmp_path_factory.mktemp("variants")
    pipe = load_pipeline(sd15_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    pipe.unet.save_pretrained(root / "tuned" / "unet")
    save_file(pipe.unet.state_dict(), str(root / "tuned.safetensors"))
    lora_pipe = load_pipeline(sd15_dir)
    lora_pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=4, init_lora_weights="gaussian",
                                          target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for n, p in lora_pipe.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    StableDiffusionPipeline.save_lora_weights(root / "lora", unet_lora_layers=get_peft_model_state_dict(lora_pipe.unet),
                                              unet_lora_adapter_metadata=lora_pipe.unet.peft_config["default"].to_dict())
    return {"root": root, "tuned": _out(pipe), "lora": _out(lora_pipe)}


def _out(pipe):
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 16, 32, generator=g)
    with torch.no_grad():
        return pipe.unet(x, torch.tensor([400]), encoder_hidden_states=c).sample


def test_denoiser_folder_file_and_lora_give_the_tuned_outputs(sd15_dir, tuned_parts):
    root = tuned_parts["root"]
    for source in (root / "tuned", root / "tuned" / "unet", root / "tuned.safetensors"):
        torch.testing.assert_close(_out(load_pipeline(sd15_dir, variant=BackboneVariant(denoiser=str(source)))),
                                   tuned_parts["tuned"])
    fused = load_pipeline(sd15_dir, variant=BackboneVariant(lora=str(root / "lora")))
    attached = load_pipeline(sd15_dir, variant=BackboneVariant(lora=str(root / "lora" / "pytorch_lora_weights.safetensors"),
                                                               fuse_lora=False))
    torch.testing.assert_close(_out(fused), tuned_parts["lora"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_out(attached), tuned_parts["lora"], rtol=1e-4, atol=1e-5)
    assert type(fused.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q) is torch.nn.Linear
    half = load_pipeline(sd15_dir, variant=BackboneVariant(lora=str(root / "lora"), lora_scale=0.5))
    stock = _out(load_pipeline(sd15_dir))
    assert 0 < (_out(half) - stock).abs().max() < (tuned_parts["lora"] - stock).abs().max()


def test_a_denoiser_of_another_architecture_is_refused_before_any_change(sd15_dir, sdxl_dir):
    pipe = load_pipeline(sd15_dir)
    before = _out(pipe)
    with pytest.raises(ValueError, match=r"another architecture than this pipeline's \(.* there, .* here"):
        apply_variant(pipe, BackboneVariant(denoiser=str(sdxl_dir)))
    torch.testing.assert_close(_out(pipe), before)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        apply_variant(pipe, BackboneVariant(denoiser=str(sd15_dir / "missing")))


def test_a_weights_file_of_other_shapes_is_refused_naming_a_tensor(sd15_dir, tmp_path):
    pipe = load_pipeline(sd15_dir)
    state = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    key = next(iter(state))
    state[key] = torch.zeros(3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=rf"does not fit .*{key}: \[3\] there"):
        apply_variant(pipe, BackboneVariant(denoiser=str(tmp_path / "bad.safetensors")))


def test_content_hash_follows_the_weights_not_their_precision(sd15_dir, tuned_parts):
    stock = load_pipeline(sd15_dir)
    assert denoiser_hash(stock) == denoiser_hash(load_pipeline(sd15_dir, "cpu", torch.bfloat16))
    tuned = load_pipeline(sd15_dir, variant=BackboneVariant(denoiser=str(tuned_parts["root"] / "tuned")))
    fused = load_pipeline(sd15_dir, variant=BackboneVariant(lora=str(tuned_parts["root"] / "lora")))
    assert len({denoiser_hash(stock), denoiser_hash(tuned), denoiser_hash(fused)}) == 3
    first = content_hash(stock.unet)
    with torch.no_grad():
        next(stock.unet.parameters()).mul_(1.5)  # an in-place change: the cached hash is not reused
    assert content_hash(stock.unet) != first


def test_content_hash_of_a_full_size_weight():
    # SD1.5's 1280x2560x3x3 convs (29,491,200 values): a float32 linspace of sample positions rounded the last one
    # past the end, and hashing (every full-size training run, every token load) failed with an IndexError
    module = torch.nn.Linear(1, 1)
    module.weight = torch.nn.Parameter(torch.ones(29_491_200))
    assert len(content_hash(module)) > 8


def test_tokens_trained_on_another_backbone_load_with_a_warning(sd15_dir, tuned_parts, tmp_path, caplog):
    import json

    from agsm.tokens.token_file import read_tokens, save_tokens, tokens_from_file

    tuned = load_pipeline(sd15_dir, variant=BackboneVariant(denoiser=str(tuned_parts["root"] / "tuned")))
    plain = write_token_file(tmp_path, tuned)
    tensors, meta = read_tokens(plain)
    record = {"model": "sd15", "denoiser": "runs/dpo/unet", "denoiser_hash": denoiser_hash(tuned)}
    path = save_tokens(tmp_path / "with_record.safetensors", tokens_from_file(tensors, meta),
                       {k: meta[k] for k in ("family", "architecture", "token_width", "num_train_timesteps")},
                       {"stages": meta["stages"]}, "agsm", {}, 3, trained_on=record)
    assert json.loads(read_tokens(path)[1]["trained_on"]) == record
    with caplog.at_level(logging.WARNING, logger="agsm.pipelines"):
        load_soft_tokens(tuned, path)
    assert not [r for r in caplog.records if "were trained on" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="agsm.pipelines"):
        load_soft_tokens(load_pipeline(sd15_dir), path)
    message = " ".join(r.getMessage() for r in caplog.records if "were trained on" in r.getMessage())
    assert "runs/dpo/unet" in message and denoiser_hash(tuned) in message
    assert denoiser_hash(load_pipeline(sd15_dir)) in message


def test_sample_command_takes_a_denoiser_and_records_it(sd15_dir, tuned_parts, tmp_path):
    import json

    from agsm.cli import main

    main(["sample", "--model", str(sd15_dir), "--denoiser", str(tuned_parts["root"] / "tuned"), "--prompt",
          "a red circle", "--steps", "2", "--out", str(tmp_path / "s"), "--device", "cpu", "--dtype", "float32"])
    record = json.loads((tmp_path / "s" / "run.json").read_text())
    assert record["variant"]["denoiser"] == str(tuned_parts["root"] / "tuned")
    with pytest.raises(SystemExit):
        main(["sample", "--model", str(sd15_dir), "--lora-scale", "0.5", "--prompt", "x", "--out", str(tmp_path / "t")])
