"""Token injection: stock output when disabled, changed output and token-only gradients when enabled."""
import pytest
import torch

from agsm.backbones.unet import UNetBackbone
from agsm.backbones.architectures import tiny_sd15_pipeline, tiny_sdxl_pipeline
from agsm.tokens import SoftTokens, UNetTokenInjector


@pytest.fixture(params=["sd15", "sdxl", "sd15-v"])
def backbone(request):
    make = tiny_sdxl_pipeline if request.param == "sdxl" else tiny_sd15_pipeline
    kind = "v_prediction" if request.param.endswith("-v") else "epsilon"
    return UNetBackbone(make(seed=3, prediction_type=kind))


def _inputs(backbone, n=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, 16, 16, generator=g)
    t = torch.tensor([5, 250, 600, 999])[:n]
    cond = backbone.encode_text(["a red circle", "two blue squares", "a green square", "one yellow circle"][:n])
    return x, t, cond


def test_disabled_tokens_are_bit_identical_and_enabled_change(backbone):
    x, t, cond = _inputs(backbone)
    stock = backbone.predict(x, t, cond)
    tokens = SoftTokens(4, backbone.token_width)
    injector = UNetTokenInjector(backbone.unet, tokens)
    injector.enabled = False
    assert torch.equal(backbone.predict(x, t, cond), stock)
    injector.enabled = True
    assert (backbone.predict(x, t, cond) - stock).abs().max() > 1e-4
    injector.remove()
    assert torch.equal(backbone.predict(x, t, cond), stock)


def test_gradients_reach_only_the_tokens(backbone):
    x, t, cond = _inputs(backbone)
    tokens = SoftTokens(4, backbone.token_width)
    UNetTokenInjector(backbone.unet, tokens)
    backbone.predict(x, t, cond).square().mean().backward()
    assert tokens.sets.grad is not None and tokens.sets.grad.abs().sum() > 0
    assert tokens.time_table.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.unet.parameters())


def test_one_batch_mixes_positive_and_negative_sets():
    backbone = UNetBackbone(tiny_sd15_pipeline(seed=1))
    x, t, cond = _inputs(backbone)
    tokens = SoftTokens(4, backbone.token_width, num_sets=2)
    injector = UNetTokenInjector(backbone.unet, tokens)
    mixed_sets = torch.tensor([0, 1, 1, 0])
    with injector.use(tokens, mixed_sets):
        mixed = backbone.predict(x, t, cond)
    for i, s in enumerate(mixed_sets.tolist()):
        with injector.use(tokens, torch.tensor([s])):
            alone = backbone.predict(x[i:i + 1], t[i:i + 1], cond[i:i + 1])
        assert torch.allclose(mixed[i:i + 1], alone, atol=1e-5)
    with injector.use(tokens, torch.zeros(4, dtype=torch.long)):
        all_positive = backbone.predict(x, t, cond)
    assert (mixed[1] - all_positive[1]).abs().max() > 1e-5  # psi- is really used for sample 1


def test_stages_choose_which_layers_get_tokens():
    backbone = UNetBackbone(tiny_sd15_pipeline())
    tokens = SoftTokens(2, backbone.token_width)
    counts = {}
    for stages in (["down"], ["down", "mid"], ["down", "mid", "up"]):
        injector = UNetTokenInjector(backbone.unet, tokens, stages)
        counts[tuple(stages)] = injector.num_layers
        injector.remove()
    assert counts[("down",)] < counts[("down", "mid")] < counts[("down", "mid", "up")]
    with pytest.raises(ValueError, match="unknown UNet stages"):
        UNetTokenInjector(backbone.unet, tokens, ["middle"])


def test_time_table_is_indexed_per_sample():
    tokens = SoftTokens(2, 8, num_sets=2, num_buckets=100)
    with torch.no_grad():
        tokens.time_table.copy_(torch.arange(100.0)[:, None].expand(100, 8))
    out = tokens(torch.tensor([0, 1]), torch.tensor([9, 995]))
    assert torch.allclose(out[0] - tokens.sets[0], torch.zeros(2, 8))       # bucket 0
    assert torch.allclose(out[1] - tokens.sets[1], torch.full((2, 8), 99.0))  # bucket 99


def test_copy_initialisation_keeps_tokens_distinct():
    bos = torch.ones(8)
    tokens = SoftTokens(4, 8, init_tokens=bos, init_std=0.02)
    assert torch.allclose(tokens.sets.mean(), torch.tensor(1.0), atol=0.05)
    assert tokens.sets[0].std(0).min() > 0  # identical copies would stay identical forever


def test_per_block_time_table_adds_each_blocks_own_row_and_round_trips(tmp_path):
    from agsm.tokens.token_file import save_tokens, read_tokens, tokens_from_file

    tokens = SoftTokens(6, 5, num_sets=2, num_buckets=10, time_groups=3, time_init_std=0.02)
    assert tokens.time_table.shape == (10, 3, 5) and tokens.time_table.abs().sum() > 0
    t = torch.tensor([0.0, 999.0])
    out = tokens(torch.tensor([0, 1]), t)
    for group in range(3):
        for j in range(2):
            k = 2 * group + j
            torch.testing.assert_close(out[0, k], tokens.sets[0, k] + tokens.time_table[0, group])
            torch.testing.assert_close(out[1, k], tokens.sets[1, k] + tokens.time_table[9, group])
    info = {"family": "mmdit", "architecture": "sd3", "token_width": 5, "num_train_timesteps": 1000}
    save_tokens(tmp_path / "t.safetensors", tokens, info, {"blocks": "3"}, "agsm", {}, 1)
    back = tokens_from_file(*read_tokens(tmp_path / "t.safetensors"))
    torch.testing.assert_close(back(torch.tensor([0, 1]), t), out.detach())
    with pytest.raises(ValueError, match="time_groups"):
        SoftTokens(6, 5, time_groups=4)
