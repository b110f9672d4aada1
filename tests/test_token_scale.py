"""The token scale: 0 is the stock pipeline bit for bit, 1 is the injection as trained (checked against a reference
injection written here, independent of agsm's processors), 0.5 lies between, on a UNet (SD1.5) and an MM-DiT (SD3)."""
import numpy as np
import pytest
import torch

from token_file_helpers import fresh_pipeline, images, write_token_file

from agsm import load_soft_tokens, set_soft_tokens_scale, unload_soft_tokens
from agsm.tokens.token_file import read_tokens, tokens_from_file


def _positive_tokens(tokens, timestep, batch):
    t = torch.as_tensor(timestep).reshape(-1).expand(batch)
    return tokens(torch.zeros(batch, dtype=torch.long), t)


def _reference_unet(pipe, tokens):
    """Tokens after BOS in the UNet's whole context: what tokens placed in every stage do, with stock processors."""
    def insert(module, args, kwargs):
        context = kwargs["encoder_hidden_states"]
        own = _positive_tokens(tokens, args[1], context.shape[0])
        return args, {**kwargs, "encoder_hidden_states": torch.cat([context[:, :1], own, context[:, 1:]], dim=1)}
    return [pipe.unet.register_forward_pre_hook(insert, with_kwargs=True)]


def _reference_mmdit(pipe, tokens, blocks):
    """Block k of the first `blocks` gets its own slice of tokens appended to its context, removed after it."""
    per_block, now = tokens.total_tokens // blocks, {}

    def prepare(module, args, kwargs):
        now["tokens"] = _positive_tokens(tokens, kwargs["timestep"], kwargs["hidden_states"].shape[0])

    def appender(k):
        def append(module, args, kwargs):
            context = kwargs["encoder_hidden_states"]
            own = now["tokens"][:, k * per_block:(k + 1) * per_block]
            return args, {**kwargs, "encoder_hidden_states": torch.cat([context, own], dim=1)}
        return append

    def strip(module, args, output):
        context, hidden = output
        return (None if context is None else context[:, :-per_block]), hidden

    handles = [pipe.transformer.register_forward_pre_hook(prepare, with_kwargs=True)]
    for k, block in enumerate(pipe.transformer.transformer_blocks[:blocks]):
        handles += [block.register_forward_pre_hook(appender(k), with_kwargs=True), block.register_forward_hook(strip)]
    return handles


@pytest.mark.parametrize("model", ["sd15_dir", "sd3_dir"])
def test_scale_zero_is_stock_one_is_as_trained_and_half_lies_between(model, request, tmp_path):
    pipe = fresh_pipeline(request.getfixturevalue(model))
    stock = images(pipe)
    token_file = write_token_file(tmp_path, pipe, stages="down,mid,up", blocks=3, scale=1.0)
    tokens = tokens_from_file(*read_tokens(token_file))
    handles = _reference_unet(pipe, tokens) if model == "sd15_dir" else _reference_mmdit(pipe, tokens, 3)
    as_trained = images(pipe)
    for handle in handles:
        handle.remove()
    full_effect = np.abs(as_trained - stock).mean()
    assert full_effect > 1e-4  # the random tiny MM-DiT listens to its context only a little

    load_soft_tokens(pipe, token_file, scale=0.0)
    np.testing.assert_array_equal(images(pipe), stock)
    set_soft_tokens_scale(pipe, 1.0)
    np.testing.assert_array_equal(images(pipe), as_trained)
    set_soft_tokens_scale(pipe, 0.5)
    half = images(pipe)
    assert 0 < np.abs(half - stock).mean() < full_effect
    assert 0 < np.abs(half - as_trained).mean() < full_effect
    unload_soft_tokens(pipe)
    np.testing.assert_array_equal(images(pipe), stock)


def _denoiser_call(pipe):
    """One denoiser call on fixed random inputs (batch 2), and the first attention module that carries tokens."""
    g = torch.Generator().manual_seed(0)
    if getattr(pipe, "unet", None) is not None:
        unet = pipe.unet
        x = torch.randn(2, unet.config.in_channels, 16, 16, generator=g)
        context = torch.randn(2, 7, unet.config.cross_attention_dim, generator=g)
        layer = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
        return (lambda: unet(x, torch.tensor([500, 500]), encoder_hidden_states=context).sample), layer
    net = pipe.transformer
    x = torch.randn(2, net.config.in_channels, 16, 16, generator=g)
    context = torch.randn(2, 7, net.config.joint_attention_dim, generator=g)
    pooled = torch.randn(2, net.config.pooled_projection_dim, generator=g)
    def call():
        return net(hidden_states=x, timestep=torch.tensor([500.0, 500.0]), encoder_hidden_states=context,
                   pooled_projections=pooled).sample
    return call, net.transformer_blocks[0].attn


@pytest.mark.parametrize("model", ["sd15_dir", "sd3_dir"])
def test_each_token_layer_interpolates_its_attention_output(model, request, tmp_path):
    """out(c) = out(0) + c (out(1) - out(0)) at the first token layer (its inputs do not depend on the scale);
    for MM-DiT both streams, image rows and text rows."""
    pipe = fresh_pipeline(request.getfixturevalue(model))
    injector = load_soft_tokens(pipe, write_token_file(tmp_path, pipe, scale=1.0))
    call, layer = _denoiser_call(pipe)
    seen = []
    layer.register_forward_hook(lambda module, args, output: seen.append(output))
    with torch.no_grad():
        for scale in (0.0, 1.0, 0.25, 2.0):
            injector.scale = scale
            call()
    as_tuple = [out if isinstance(out, tuple) else (out,) for out in seen]
    for scale, mixed in zip((0.25, 2.0), as_tuple[2:]):
        for stock, trained, got in zip(as_tuple[0], as_tuple[1], mixed):
            trained = trained[:, :stock.shape[1]]  # MM-DiT: the block's token rows follow the text rows
            torch.testing.assert_close(got[:, :stock.shape[1]], torch.lerp(stock, trained, scale), rtol=0, atol=1e-6)
        assert (mixed[0] - as_tuple[0][0]).abs().max() > 1e-5


def test_bad_scales_are_refused_naming_the_value(sd15_dir, tmp_path):
    pipe = fresh_pipeline(sd15_dir)
    token_file = write_token_file(tmp_path, pipe)
    for bad in (-0.5, float("nan"), "strong", True):
        with pytest.raises(ValueError, match=r"scale .* must be a finite number >= 0"):
            load_soft_tokens(pipe, token_file, scale=bad)
    assert not hasattr(pipe, "_agsm_tokens")
    load_soft_tokens(pipe, token_file)
    with pytest.raises(ValueError, match=r"scale -1 must be a finite number >= 0"):
        set_soft_tokens_scale(pipe, -1)
