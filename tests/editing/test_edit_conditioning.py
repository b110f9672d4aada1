"""Guided predictions: the CFG formula, and the [uncond..., cond...] layout that token branch options rely on."""
import torch

from agsm import load_soft_tokens
from agsm.editing.conditioning import encode_prompt, guided_predictions


def test_guided_predictions_follow_cfg_and_token_branches(tmp_path, make_token_file):
    from agsm.backbones.architectures import tiny_sd15_pipeline

    pipe = tiny_sd15_pipeline()
    t = torch.tensor(500)
    xa, xb = torch.randn(2, 1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    ca, cb = encode_prompt(pipe, "a red circle", (32, 32)), encode_prompt(pipe, "a blue square", (32, 32))
    unet = lambda x, c, branch: pipe.unet(x, t, encoder_hidden_states=c.embeds[branch:branch + 1]).sample  # noqa: E731
    with torch.no_grad():
        stock = {(k, b): unet(x, c, b) for k, x, c in (("a", xa, ca), ("b", xb, cb)) for b in (0, 1)}
        # uncond_tokens="none": the unconditional halves see no tokens, the conditional ones do.
        load_soft_tokens(pipe, make_token_file(tmp_path, pipe), uncond_tokens="none")
        tok = {k: unet(x, c, 1) for k, x, c in (("a", xa, ca), ("b", xb, cb))}  # no guidance flag: tokens on
    assert (tok["a"] - stock["a", 1]).abs().max() > 1e-4
    got_a, got_b = guided_predictions(pipe, t, [(xa, ca, 3.0), (xb, cb, 1.0)])
    torch.testing.assert_close(got_a, stock["a", 0] + 3.0 * (tok["a"] - stock["a", 0]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_b, tok["b"], atol=1e-5, rtol=1e-4)
    # Without guidance only conditional branches run, all of them with tokens.
    (only_b,) = guided_predictions(pipe, t, [(xb, cb, 1.0)])
    torch.testing.assert_close(only_b, tok["b"], atol=1e-5, rtol=1e-4)
    assert "_guidance_scale" not in pipe.__dict__  # the flag was put back as it was
