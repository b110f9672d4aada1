"""Soft tokens in an MM-DiT (SD3 architecture, with an SD3.5 dual-attention block) and the flow backbone."""
import numpy as np
import pytest
import torch

from agsm.backbones.mmdit import MMDiTBackbone
from agsm.backbones.parameterization import sample_flow_timesteps
from agsm.objectives import AgsmOptions
from agsm.objectives.agsm import ema_point
from agsm.backbones.architectures import tiny_sd3_pipeline
from agsm.tokens import NEGATIVE, POSITIVE, MMDiTTokenInjector, SoftTokens


@pytest.fixture(scope="module")
def backbone():
    return MMDiTBackbone(tiny_sd3_pipeline(seed=2))


def _inputs(backbone, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 16, 16, generator=g)
    cond = backbone.encode_text(["a red circle", "two blue squares", "a cat", "a dog"][:batch])
    t = torch.tensor([700.0, 150.0, 420.0, 990.0][:batch])
    return x, t, cond


def _tokens(backbone, blocks=5, per_block=4, std=0.5, seed=0):
    torch.manual_seed(seed)
    return SoftTokens(blocks * per_block, backbone.token_width, init_std=std)


def test_disabled_tokens_are_bit_identical_and_enabled_change(backbone):
    x, t, cond = _inputs(backbone)
    with torch.no_grad():
        stock = backbone.predict(x, t, cond)
        injector = MMDiTTokenInjector(backbone.transformer, _tokens(backbone), num_blocks=5)
        injector.enabled = False
        disabled = backbone.predict(x, t, cond)
        injector.enabled = True
        enabled = backbone.predict(x, t, cond)
        injector.remove()
        removed = backbone.predict(x, t, cond)
    assert torch.equal(disabled, stock) and torch.equal(removed, stock)
    assert (enabled - stock).abs().max() > 1e-4


def test_gradients_reach_only_the_tokens_also_with_checkpointing(backbone):
    x, t, cond = _inputs(backbone)
    tokens = _tokens(backbone)
    injector = MMDiTTokenInjector(backbone.transformer, tokens, num_blocks=5)
    try:
        plain = backbone.predict(x, t, cond)
        plain.square().mean().backward()
        grad = tokens.sets.grad.clone()
        assert grad.abs().sum() > 0 and tokens.time_table.grad.abs().sum() > 0
        assert all(p.grad is None for p in backbone.pipe.transformer.parameters())
        tokens.zero_grad()
        backbone.transformer.enable_gradient_checkpointing()  # blocks then get positional arguments
        checkpointed = backbone.predict(x, t, cond)
        checkpointed.square().mean().backward()
        torch.testing.assert_close(checkpointed, plain)
        torch.testing.assert_close(tokens.sets.grad, grad)
    finally:
        backbone.transformer.disable_gradient_checkpointing()
        injector.remove()


def test_each_block_gets_its_own_tokens_and_later_blocks_the_stock_context(backbone):
    x, t, cond = _inputs(backbone, batch=1)
    tokens = _tokens(backbone, blocks=3)
    injector = MMDiTTokenInjector(backbone.transformer, tokens, num_blocks=3)
    seen = {}  # spies registered after the injector see what each block receives
    hooks = [block.register_forward_pre_hook(
        lambda m, a, kw, i=i: seen.__setitem__(i, kw["encoder_hidden_states"].shape[1]), with_kwargs=True)
        for i, block in enumerate(backbone.transformer.transformer_blocks)]
    try:
        with torch.no_grad():
            before = backbone.predict(x, t, cond)
            # A random change (LayerNorm would cancel a constant shift), to block 1's tokens only.
            tokens.sets[0, 4:8] += torch.randn(4, tokens.width, generator=torch.Generator().manual_seed(1))
            after_block1 = backbone.predict(x, t, cond)
        stock = backbone.transformer.context_embedder(cond.embeds).shape[1]
        assert [seen[i] for i in range(6)] == [stock + 4] * 3 + [stock] * 3
        assert (after_block1 - before).abs().max() > 1e-4
    finally:
        for h in hooks:
            h.remove()
        injector.remove()


def test_one_batch_mixes_positive_and_negative_sets(backbone):
    x, t, cond = _inputs(backbone, batch=4)
    torch.manual_seed(0)
    tokens = SoftTokens(20, backbone.token_width, num_sets=2, init_std=0.5)
    injector = MMDiTTokenInjector(backbone.transformer, tokens, num_blocks=5)
    sets = torch.tensor([POSITIVE, NEGATIVE, NEGATIVE, POSITIVE])
    try:
        with torch.no_grad(), injector.use(tokens, sets):
            mixed = backbone.predict(x, t, cond)
        for i in range(4):
            with torch.no_grad(), injector.use(tokens, sets[i:i + 1]):
                alone = backbone.predict(x[i:i + 1], t[i:i + 1], cond[i:i + 1])
            torch.testing.assert_close(mixed[i:i + 1], alone, rtol=1e-4, atol=1e-5)
        with torch.no_grad(), injector.use(tokens, torch.full((4,), POSITIVE)):
            all_positive = backbone.predict(x, t, cond)
        assert (all_positive[1] - mixed[1]).abs().max() > 1e-5
    finally:
        injector.remove()


def test_bad_placements_are_refused(backbone):
    with pytest.raises(ValueError, match="between 1 and 6"):
        MMDiTTokenInjector(backbone.transformer, _tokens(backbone, blocks=7), num_blocks=7)
    with pytest.raises(ValueError, match="context width"):
        MMDiTTokenInjector(backbone.transformer, SoftTokens(20, 8), num_blocks=5)
    with pytest.raises(ValueError, match="split evenly"):
        MMDiTTokenInjector(backbone.transformer, SoftTokens(7, backbone.token_width), num_blocks=5)


def test_flow_noising_target_and_timesteps(backbone):
    x0, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = torch.tensor([0.0, 250.0, 1000.0])
    x_t = backbone.add_noise(x0, eps, t)
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[1], 0.75 * x0[1] + 0.25 * eps[1])
    torch.testing.assert_close(x_t[2], eps[2])
    torch.testing.assert_close(backbone.target(x0, eps, t), eps - x0)
    g = torch.Generator().manual_seed(0)
    uniform = sample_flow_timesteps(20000, g, 1000)
    shifted = sample_flow_timesteps(20000, g, 1000, shift=3.0)
    logit = sample_flow_timesteps(20000, g, 1000, sampling="logit_normal")
    assert 0 <= uniform.min() and uniform.max() < 1000 and abs(uniform.mean() - 500) < 10
    assert shifted.mean() > 600  # shift > 1 moves mass towards noise
    assert abs(logit.mean() - 500) < 10 and logit.std() < uniform.std()
    with pytest.raises(ValueError, match="'uniform', 'logit_normal'"):
        sample_flow_timesteps(2, g, 1000, sampling="beta")


class _FlowDenoiser:
    is_flow, max_timestep = True, 1000.0

    def add_noise(self, x0, eps, t):
        s = (t / 1000).reshape(-1, 1)
        return (1 - s) * x0 + s * eps


def test_ema_prediction_point_is_one_euler_step_earlier_on_flow_models():
    x0, eps, t = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([100.0, 990.0])
    x_t = _FlowDenoiser().add_noise(x0, eps, t)
    x_prev, t_prev = ema_point(_FlowDenoiser(), x0, eps, x_t, t, AgsmOptions(ema_step=20.0))  # auto
    torch.testing.assert_close(t_prev, torch.tensor([120.0, 1000.0]))  # clamped at pure noise
    torch.testing.assert_close(x_prev[0], x_t[0] + 0.02 * (eps[0] - x0[0]))  # x_{t+dt} = x_t + dt (eps - x0)
    same, t_same = ema_point(_FlowDenoiser(), x0, eps, x_t, t, AgsmOptions(ema_at="x_t"))
    assert same is x_t and t_same is t
    unet = type("UNetDenoiser", (), {"is_flow": False})()
    assert ema_point(unet, x0, eps, x_t, t, AgsmOptions())[0] is x_t  # auto = x_t on UNets
    with pytest.raises(ValueError, match="flow backbones"):
        ema_point(unet, x0, eps, x_t, t, AgsmOptions(ema_at="previous_step"))


def test_collapsed_zero_tokens_give_the_stock_predictions_with_soft_tokens_in_place():
    """T5-free SD3: one zero token repeated inside attention == the pipeline's 256 zero tokens, also with
    soft tokens appended after it."""
    from agsm.backbones.t5_free import fast_sampling

    pipe = tiny_sd3_pipeline(seed=4)
    fast = MMDiTBackbone(pipe)
    assert fast.collapse_zero_tokens
    x, t, cond = _inputs(fast, batch=2)
    stock_cond = type(cond)(*pipe.encode_prompt(["a red circle", "two blue squares"], None, None,
                                                do_classifier_free_guidance=False)[::2])
    assert cond.embeds.shape[1] + 255 == stock_cond.embeds.shape[1]
    injector = MMDiTTokenInjector(fast.transformer, _tokens(fast, blocks=4), num_blocks=4)
    try:
        with torch.no_grad():
            collapsed = fast.predict(x, t, cond)
            stock = fast.predict(x, t, stock_cond)  # full-length contexts pass the hooks unchanged
        torch.testing.assert_close(collapsed, stock, rtol=1e-4, atol=1e-5)
    finally:
        injector.remove()
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    args = dict(prompt="a red circle", num_inference_steps=3, guidance_scale=4.0, output_type="np")
    stock_images = pipe(**args, generator=generator()).images
    with fast_sampling(pipe) as extra:
        assert extra == {"max_sequence_length": 1}
        fast_images = pipe(**args, generator=generator(), **extra).images
    np.testing.assert_allclose(fast_images, stock_images, atol=2e-4)
