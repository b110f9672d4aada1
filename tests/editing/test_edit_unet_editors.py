"""PnP, MasaCtrl and direct inversion on UNet pipelines: zero edits reproduce, real edits edit, the injection is
active and switched off by its own options, hooks and processors are left as found, tokens take part."""
import pytest
import torch

from agsm.editing import EDITORS, edit, edit_options
from agsm.editing.conditioning import encode_prompt, guided_predictions
from agsm.editing.ddim_inversion import DDIMInversionOptions
from agsm.editing.injection import RowCopy, branch_rows, hooked, scale_layer
from agsm.editing.latents import decode_latents, encode_image
from agsm.editing.preservation import psnr

UNET_EDITORS = ("pnp", "masactrl", "direct_inversion")


def _latents(pipe, image, source_prompt, target_prompt, method, **options):
    size = (image.height, image.width)
    _, opts = edit_options(pipe, method, **options)
    x0 = encode_image(pipe, image)
    src, tgt = encode_prompt(pipe, source_prompt, size), encode_prompt(pipe, target_prompt, size)
    return x0, EDITORS[method].latents(pipe, x0, src, tgt, opts, None, False)


def _no_hooks(unet) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in unet.modules())


@pytest.fixture(scope="module")
def red_circle():
    from agsm.shapes.render import render
    from agsm.shapes.spec import Scene, ShapeObject

    return render(Scene((ShapeObject("circle", "red", 20, 24, 14),)))


@pytest.mark.parametrize("method", UNET_EDITORS)
def test_zero_edit_is_within_the_inversion_error(shapes_pipe, scene, method):
    """Source = target prompt, no guidance: as close to the input as DDIM inversion's own zero edit (direct
    inversion: exactly the input latent, since its source branch is pinned to the trajectory)."""
    image, prompt = scene
    x0, ddim = _latents(shapes_pipe, image, prompt, prompt, "ddim_inversion", target_guidance=1.0)
    _, ours = _latents(shapes_pipe, image, prompt, prompt, method, target_guidance=1.0)
    ddim_err, err = ((ddim - x0).norm() / x0.norm()).item(), ((ours - x0).norm() / x0.norm()).item()
    round_trip = decode_latents(shapes_pipe, x0)
    print(f"{method} zero edit: relative latent error {err:.4f} (DDIM {ddim_err:.4f}), PSNR vs round trip "
          f"{psnr(decode_latents(shapes_pipe, ours), round_trip):.2f} dB")
    assert err <= ddim_err * 1.1 + 1e-5
    if method == "direct_inversion":
        assert err < 1e-4


def test_direct_inversion_zero_edit_is_exact_under_guidance(shapes_pipe, scene):
    """With the target offset the guidance drift cancels: CFG 7.5 on equal prompts still returns the input."""
    image, prompt = scene
    x0, ours = _latents(shapes_pipe, image, prompt, prompt, "direct_inversion", steps=20)
    _, ddim = _latents(shapes_pipe, image, prompt, prompt, "ddim_inversion", steps=20)
    assert ((ours - x0).norm() / x0.norm()).item() < 1e-4
    assert ((ddim - x0).norm() / x0.norm()).item() > 0.05  # DDIM at CFG 7.5 drifts


@pytest.mark.slow
@pytest.mark.parametrize("method", UNET_EDITORS)
def test_colour_edit_edits(shapes_pipe, red_circle, method):
    from agsm.shapes.verify import verify

    edited = edit(shapes_pipe, red_circle, "a red circle", "a blue circle", method=method, progress=False)
    assert verify(edited, "a blue circle").correct
    assert psnr(edited, red_circle) < 30


@pytest.mark.parametrize("method, off", [("pnp", {"tau_f": 0.0, "tau_a": 0.0}),
                                         ("masactrl", {"start_step": 10}),
                                         ("direct_inversion", {"target_offset": False})])
def test_switched_off_equals_ddim_inversion_and_on_differs(shapes_pipe, red_circle, method, off):
    args = (shapes_pipe, red_circle, "a red circle", "a blue circle")
    _, ddim = _latents(*args, "ddim_inversion", steps=10)
    _, plain = _latents(*args, method, steps=10, **off)
    _, injected = _latents(*args, method, steps=10)
    # Switched off, the editor still batches source and target branches in one UNet call (DDIM inversion: the
    # target alone), and multi-threaded CPU kernels round differently per batch size: 0 apart on one thread,
    # up to 6e-5 relative on two (CI). Equal to that rounding; the injected edit differs 5x beyond it.
    torch.testing.assert_close(plain, ddim, atol=2e-4, rtol=2e-4)
    assert (injected - ddim).abs().max().item() > 1e-3


def test_batch_layout_maps_source_rows_onto_target_rows(shapes_pipe):
    """branch_rows() matches guided_predictions' layout: copying the source rows of the UNet's output onto the
    target rows makes the target's guided prediction the source's (branch-matched) or its conditional (PnP)."""
    cond_a, cond_b = encode_prompt(shapes_pipe, "a red circle", (64, 64)), encode_prompt(shapes_pipe, "a blue square", (64, 64))
    x_a, x_b = torch.randn(2, 1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(501)
    source_rows, target_rows, batch = branch_rows(True)
    copy = RowCopy()
    with hooked([(shapes_pipe.unet.conv_out, copy)]):
        copy.set(True, zip(target_rows, source_rows), batch)
        src, tgt = guided_predictions(shapes_pipe, t, [(x_a, cond_a, 3.0), (x_b, cond_b, 3.0)])
        torch.testing.assert_close(tgt, src)
        copy.set(True, [(row, source_rows[-1]) for row in target_rows], batch)
        _, tgt = guided_predictions(shapes_pipe, t, [(x_a, cond_a, 1.0), (x_b, cond_b, 3.0)])
    (src_cond,) = guided_predictions(shapes_pipe, t, [(x_a, cond_a, 1.0)])
    torch.testing.assert_close(tgt, src_cond, atol=1e-5, rtol=1e-5)
    assert _no_hooks(shapes_pipe.unet)


@pytest.mark.parametrize("method", UNET_EDITORS)
def test_hooks_and_processors_are_restored_also_after_an_error(shapes_pipe, red_circle, method):
    unet = shapes_pipe.unet
    before = dict(unet.attn_processors)
    edit(shapes_pipe, red_circle, "a red circle", "a blue circle", method=method, steps=3, progress=False)
    assert all(unet.attn_processors[k] is v for k, v in before.items()) and _no_hooks(unet)

    calls = []

    def fail_on_the_fifth_call(module, args, kwargs):
        calls.append(1)
        if len(calls) == 5:  # during editing, after inversion's 3 calls
            raise RuntimeError("boom")

    handle = unet.register_forward_pre_hook(fail_on_the_fifth_call, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            edit(shapes_pipe, red_circle, "a red circle", "a blue circle", method=method, steps=3, progress=False)
    finally:
        handle.remove()
    assert all(unet.attn_processors[k] is v for k, v in before.items()) and _no_hooks(unet)


@pytest.mark.parametrize("method", UNET_EDITORS)
def test_tokens_load_and_unload_around_an_edit(shapes_pipe, red_circle, method, tmp_path, make_token_file):
    from agsm.pipelines import load_soft_tokens, unload_soft_tokens

    before = dict(shapes_pipe.unet.attn_processors)
    args = (shapes_pipe, red_circle, "a red circle", "a blue circle")
    base = edit(*args, method=method, steps=5, progress=False)
    load_soft_tokens(shapes_pipe, make_token_file(tmp_path, shapes_pipe), uncond_tokens="none")
    try:
        with_tokens = edit(*args, method=method, steps=5, progress=False)
    finally:
        assert unload_soft_tokens(shapes_pipe)
    again = edit(*args, method=method, steps=5, progress=False)
    assert psnr(with_tokens, base) < 60  # the tokens took part
    assert psnr(again, base) == 100.0   # and left nothing behind
    assert all(shapes_pipe.unet.attn_processors[k] is v for k, v in before.items())
    assert _no_hooks(shapes_pipe.unet)


@pytest.mark.parametrize("method, off", [("pnp", {"tau_f": 0.0, "tau_a": 0.0}),
                                         ("masactrl", {"start_step": 4}),
                                         ("direct_inversion", {"target_offset": False})])
def test_sdxl(sdxl_dir, method, off):
    """On the tiny SDXL pipeline (pooled text, time ids): switched off it is DDIM inversion, on it differs."""
    from PIL import Image

    from agsm.sample import load_pipeline

    pipe = load_pipeline(sdxl_dir)
    image = Image.new("RGB", (32, 32), "white")
    image.paste((220, 30, 30), (8, 8, 20, 20))
    args = (pipe, image, "a red square", "a blue square")
    _, ddim = _latents(*args, "ddim_inversion", steps=4)
    _, plain = _latents(*args, method, steps=4, **off)
    _, injected = _latents(*args, method, steps=4, **({"start_step": 0} if method == "masactrl" else {}))
    # Random tiny weights: batching 2 vs 4 rows moves float32 results by up to ~6e-5.
    torch.testing.assert_close(plain, ddim, atol=2e-4, rtol=1e-4)
    assert (injected - ddim).abs().max().item() > 1e-4


def test_layer_scaling_and_options(shapes_pipe):
    assert scale_layer(10, 16, 70) == 44  # MasaCtrl's own SDXL setting
    assert scale_layer(10, 16, 16) == 10 and scale_layer(4, 12, 4) == 1
    _, opts = edit_options(shapes_pipe, "pnp", tau_f="0.6", attention_from="2")
    assert (opts.tau_f, opts.attention_from) == (0.6, 2)
    _, opts = edit_options(shapes_pipe, "masactrl", direct_inversion="true")
    assert opts.direct_inversion is True
    with pytest.raises(ValueError, match="tau_a=1.5 is a fraction"):
        edit_options(shapes_pipe, "pnp", tau_a=1.5)
    with pytest.raises(ValueError, match="start_layer=17 must be an integer in"):
        edit_options(shapes_pipe, "masactrl", start_layer=17)
    with pytest.raises(ValueError, match="feature_layer=12"):
        edit_options(shapes_pipe, "pnp", feature_layer=12)
    with pytest.raises(ValueError, match="direct_inversion has no option"):
        edit_options(shapes_pipe, "direct_inversion", tau_f=0.5)
    assert DDIMInversionOptions().target_guidance == EDITORS["pnp"].options().target_guidance == 7.5


@pytest.mark.slow
def test_masactrl_with_direct_inversion_runs(shapes_pipe, red_circle):
    from agsm.shapes.verify import verify

    edited = edit(shapes_pipe, red_circle, "a red circle", "a blue circle", method="masactrl",
                  direct_inversion=True, progress=False)
    assert verify(edited, "a blue circle").correct


def test_agsm_edit_command_line(shapes_model_dir, red_circle, tmp_path):
    """`agsm edit --method pnp --option tau_f=0.6`: the option arrives typed and is recorded in edit.json."""
    import argparse
    import json

    from agsm.editing.cli import add_commands

    red_circle.save(tmp_path / "in.png")
    parser = argparse.ArgumentParser(prog="agsm")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args, extra = parser.parse_known_args(
        ["edit", "--model", str(shapes_model_dir), "--image", str(tmp_path / "in.png"), "--source-prompt",
         "a red circle", "--target-prompt", "a blue circle", "--out", str(tmp_path / "out"), "--steps", "4",
         "--method", "pnp", "--option", "tau_f=0.6"])
    args.run(args, extra)
    record = json.loads((tmp_path / "out" / "edit.json").read_text())
    assert record["method"] == "pnp" and record["options"]["tau_f"] == 0.6 and record["options"]["tau_a"] == 0.5


@pytest.mark.parametrize("method", ("pnp", "masactrl"))
def test_fused_projections_are_refused(sd15_dir, method):
    from PIL import Image

    from agsm.sample import load_pipeline

    pipe = load_pipeline(sd15_dir)
    pipe.fuse_qkv_projections()
    with pytest.raises(ValueError, match="unfuse_qkv_projections"):
        edit(pipe, Image.new("RGB", (32, 32), "white"), "a red square", "a blue square", method=method, steps=2,
             progress=False)
