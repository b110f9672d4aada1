"""RF-Inversion and FlowAlign on SD3 pipelines, and FlowEdit's per-branch tokens: limiting cases against plain
inversion, the stock sampler and FlowEdit; zero edits; real edits; tokens in and out around an edit."""
import argparse

import pytest
import torch

from agsm.editing import edit_options
from agsm.editing.conditioning import encode_prompt
from agsm.editing.flowalign import FlowAlignOptions, flowalign_latents
from agsm.editing.flowedit import FlowEditOptions, flowedit_latents
from agsm.editing.latents import decode_latents, encode_image
from agsm.editing.preservation import psnr
from agsm.editing.registry import EDITORS
from agsm.editing.rf_inversion import RFInversionOptions, rf_invert, rf_inversion_latents

RUN = {"rf_inversion": (RFInversionOptions, rf_inversion_latents), "flowalign": (FlowAlignOptions, flowalign_latents),
       "flowedit": (FlowEditOptions, flowedit_latents)}


def _latents(pipe, image, source, target, method, seed=0, **options):
    cls, run = RUN[method]
    x0 = encode_image(pipe, image)
    size = (image.height, image.width)
    z = run(pipe, x0, encode_prompt(pipe, source, size), encode_prompt(pipe, target, size), cls(**options),
            torch.Generator().manual_seed(seed), progress=False)
    return x0, z


def _schedule(pipe, steps):
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas


def test_rf_inversion_without_control_is_euler_inversion_then_the_stock_sampler(flow_pipe, scene):
    """gamma = eta = 0: plain Euler inversion with the null prompt, then the stock SD3 sampler from there."""
    image, source = scene
    steps, target, w = 6, "a blue square", 4.0
    x0, z = _latents(flow_pipe, image, source, target, "rf_inversion", steps=steps, gamma=0.0, eta=0.0,
                     target_guidance=w)
    null, _, pooled, _ = flow_pipe.encode_prompt("", None, None, do_classifier_free_guidance=False, device="cpu")
    levels = _schedule(flow_pipe, steps).flip(0)
    y = x0.clone()
    with torch.no_grad():
        for s, s_next in zip(levels[:-1], levels[1:]):
            v = flow_pipe.transformer(hidden_states=y, timestep=(s * 1000).reshape(1), encoder_hidden_states=null,
                                      pooled_projections=pooled, return_dict=False)[0]
            y = y + (s_next - s) * v
    stock = flow_pipe(target, latents=y, num_inference_steps=steps, guidance_scale=w, height=64, width=64,
                      output_type="latent").images
    torch.testing.assert_close(z, stock, atol=1e-4, rtol=1e-4)


def test_rf_inversion_controllers_reach_their_targets(flow_pipe, scene):
    """gamma = 1 inverts exactly onto the noise sample y1 (Eq. 8); eta = 1 throughout samples exactly x0 (Eq. 15)."""
    image, source = scene
    x0 = encode_image(flow_pipe, image)
    prompt = encode_prompt(flow_pipe, source, (64, 64))
    y1 = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    y = rf_invert(flow_pipe, x0, prompt, 1.0, 1.0, _schedule(flow_pipe, 5), y1, progress=False)
    torch.testing.assert_close(y, y1, atol=1e-5, rtol=1e-5)
    _, z = _latents(flow_pipe, image, source, "a blue square", "rf_inversion", steps=5, eta=1.0, stop_time=1.0)
    torch.testing.assert_close(z, x0, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_rf_inversion_zero_edit_is_within_the_inversions_error(shapes_sd3_pipe, scene):
    """Source = target prompt on the trained sd3-tiny: without control the edit is the inversion round trip (its
    Euler error only); the paper's controls (gamma 0.5 draws towards a random y1) trade that for editability."""
    image, prompt = scene
    x0, plain = _latents(shapes_sd3_pipe, image, prompt, prompt, "rf_inversion", gamma=0.0, eta=0.0,
                         invert_with="source", target_guidance=1.0)
    rel = ((plain - x0).norm() / x0.norm()).item()
    round_trip = decode_latents(shapes_sd3_pipe, x0)
    db = psnr(decode_latents(shapes_sd3_pipe, plain), round_trip)
    print(f"RF-Inversion zero edit, gamma = eta = 0, 28 steps: relative latent error {rel:.4f}, {db:.2f} dB "
          f"against the VAE round trip")
    assert rel < 0.06 and db > 33  # measured 0.036 and 37.6 dB
    _, pulled = _latents(shapes_sd3_pipe, image, prompt, prompt, "rf_inversion", eta=1.0, stop_time=1.0)
    assert (pulled - x0).abs().max().item() < 1e-4  # eta = 1 on every step returns the source whatever gamma


def test_flowalign_zero_edit_keeps_the_source_exactly(flow_pipe, scene):
    """Equal prompts: p = q and v_p = v_q on every step, so neither term moves x, whatever w and zeta."""
    image, prompt = scene
    x0, z = _latents(flow_pipe, image, prompt, prompt, "flowalign", steps=8)
    assert (z - x0).abs().max().item() < 1e-5


def test_flowalign_without_regulariser_and_guidance_is_flowedit(flow_pipe, scene):
    image, source = scene
    _, aligned = _latents(flow_pipe, image, source, "a blue square", "flowalign", steps=6, zeta=0.0,
                          target_guidance=1.0)
    _, flowedit = _latents(flow_pipe, image, source, "a blue square", "flowedit", steps=6, n_max=6,
                           source_guidance=1.0, target_guidance=1.0)
    torch.testing.assert_close(aligned, flowedit, atol=1e-5, rtol=1e-5)
    _, regularised = _latents(flow_pipe, image, source, "a blue square", "flowalign", steps=6, target_guidance=1.0)
    assert (regularised - aligned).abs().max().item() > 1e-4


@pytest.mark.parametrize("method, options", [("rf_inversion", {"steps": 8}), ("flowalign", {"steps": 8})])
def test_a_real_edit_changes_the_image(flow_pipe, scene, method, options):
    image, source = scene
    _, same = _latents(flow_pipe, image, source, source, method, **options)
    _, edited = _latents(flow_pipe, image, source, "a blue square", method, **options)
    assert (edited - same).abs().max().item() > 0.1


@pytest.mark.parametrize("method", ["rf_inversion", "flowalign", "flowedit"])
def test_tokens_load_and_unload_around_an_edit(flow_pipe, scene, method, make_token_file, tmp_path):
    from agsm.pipelines import load_soft_tokens, unload_soft_tokens

    image, source = scene
    options = {"steps": 5} if method != "flowedit" else {"steps": 5, "n_max": 4}
    _, base = _latents(flow_pipe, image, source, "a blue square", method, **options)
    injector = load_soft_tokens(flow_pipe, make_token_file(tmp_path, flow_pipe, scale=1.0))
    try:
        _, tokens = _latents(flow_pipe, image, source, "a blue square", method, **options)
        assert injector.enabled
    finally:
        assert unload_soft_tokens(flow_pipe)
    _, again = _latents(flow_pipe, image, source, "a blue square", method, **options)
    assert (tokens - base).abs().max().item() > 1e-3
    torch.testing.assert_close(again, base, atol=0, rtol=0)


def test_flowedit_tokens_on_target_keeps_them_out_of_the_source_branch(flow_pipe, scene, make_token_file, tmp_path):
    """Equal prompts and guidance: with tokens in both branches the velocities still cancel; with tokens only in
    the target branch their effect is all that is left, and it moves the latent."""
    from agsm.pipelines import load_soft_tokens, unload_soft_tokens

    image, prompt = scene
    options = {"steps": 5, "n_max": 4, "source_guidance": 3.5, "target_guidance": 3.5}
    injector = load_soft_tokens(flow_pipe, make_token_file(tmp_path, flow_pipe, scale=1.0))
    try:
        x0, both = _latents(flow_pipe, image, prompt, prompt, "flowedit", **options)
        _, target_only = _latents(flow_pipe, image, prompt, prompt, "flowedit", tokens_on="target", **options)
        assert injector.enabled  # switched back on after each source prediction
    finally:
        unload_soft_tokens(flow_pipe)
    assert (both - x0).abs().max().item() < 1e-5
    assert (target_only - x0).abs().max().item() > 1e-3
    _, no_tokens = _latents(flow_pipe, image, prompt, prompt, "flowedit", tokens_on="target", **options)
    assert (no_tokens - x0).abs().max().item() < 1e-5  # without tokens installed the option changes nothing


def test_flowedit_tokens_on_cond_is_guidance_by_hand_with_stock_unconditional_branches(flow_pipe, scene,
                                                                                    make_token_file, tmp_path):
    from agsm.pipelines import load_soft_tokens, unload_soft_tokens

    image, source = scene
    options = {"steps": 5, "n_max": 4}  # the paper's guidances, 3.5 / 13.5
    _, both = _latents(flow_pipe, image, source, "a blue square", "flowedit", **options)
    _, cond = _latents(flow_pipe, image, source, "a blue square", "flowedit", tokens_on="cond", **options)
    torch.testing.assert_close(cond, both, atol=1e-5, rtol=1e-5)  # no tokens: the same guided velocities
    load_soft_tokens(flow_pipe, make_token_file(tmp_path, flow_pipe, scale=1.0))
    try:
        _, both = _latents(flow_pipe, image, source, "a blue square", "flowedit", **options)
        _, cond = _latents(flow_pipe, image, source, "a blue square", "flowedit", tokens_on="cond", **options)
    finally:
        unload_soft_tokens(flow_pipe)
    assert (cond - both).abs().max().item() > 1e-3


@pytest.mark.parametrize("method, options, message", [
    ("rf_inversion", {"gamma": 1.5}, r"gamma=1.5 must be in \[0, 1\]"),
    ("rf_inversion", {"start_time": 0.5, "stop_time": 0.25}, "start_time <= stop_time"),
    ("rf_inversion", {"invert_with": "target"}, r"invert_with='target' must be one of \('null', 'source'\)"),
    ("rf_inversion", {"target_guidance": 0.5}, "target_guidance=0.5 must be >= 1"),
    ("flowalign", {"zeta": -0.1}, r"zeta=-0.1 must be in \[0, 1\)"),
    ("flowalign", {"steps": 10, "n_max": 12}, "n_max=12 exceeds steps=10"),
    ("flowedit", {"tokens_on": "source"}, r"tokens_on='source' must be one of \('both', 'target', 'cond'\)"),
])
def test_bad_options_are_refused(flow_pipe, method, options, message):
    with pytest.raises(ValueError, match=message):
        edit_options(flow_pipe, method, **options)


def test_registry_defaults_and_command_line_options(flow_pipe, shapes_pipe):
    from agsm.editing.cli import options_from_args

    assert {"flowedit", "rf_inversion", "flowalign"} <= {n for n, e in EDITORS.items() if "sd3" in e.architectures}
    rf = edit_options(flow_pipe, "rf_inversion")[1]
    assert (rf.steps, rf.gamma, rf.eta, rf.start_time, rf.stop_time, rf.invert_with) == (28, 0.5, 0.9, 0, 0.25, "null")
    assert list(rf.eta_steps) == list(range(7)) and list(RFInversionOptions(steps=12).eta_steps) == [0, 1, 2]
    fa = edit_options(flow_pipe, "flowalign")[1]
    assert (fa.steps, fa.n_max, fa.target_guidance, fa.source_guidance, fa.zeta) == (33, 33, 13.5, 1.0, 0.01)
    args = argparse.Namespace(steps=None, option=["eta=0.8", "invert_with=source", "gamma=0"])
    method, opts = edit_options(flow_pipe, "rf_inversion", **options_from_args(args))
    assert (opts.eta, opts.invert_with, opts.gamma) == (0.8, "source", 0.0)
    with pytest.raises(ValueError, match=r"'flowalign' works on \('sd3',\) pipelines, this one is sd15"):
        edit_options(shapes_pipe, "flowalign")
