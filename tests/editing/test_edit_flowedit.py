"""FlowEdit on SD3 pipelines: a zero edit keeps the latent, the sampling branch is the stock sampler, edits edit."""
import argparse
import numpy as np
import pytest
import torch
from PIL import Image

from agsm.editing import FlowEditOptions, edit, edit_options
from agsm.editing.conditioning import encode_prompt
from agsm.editing.flowedit import flowedit_latents
from agsm.editing.latents import decode_latents, encode_image
from agsm.editing.preservation import psnr


def _edit_latents(pipe, image, source, target, **options):
    x0 = encode_image(pipe, image)
    size = (image.height, image.width)
    z = flowedit_latents(pipe, x0, encode_prompt(pipe, source, size), encode_prompt(pipe, target, size),
                         FlowEditOptions(**options), torch.Generator().manual_seed(0), progress=False)
    return x0, z


@pytest.mark.slow
def test_zero_edit_returns_the_vae_round_trip(flow_pipe, scene):
    image, prompt = scene
    # Same prompt and same guidance: z_tar == z_src at every step, so the velocity difference is zero.
    x0, z = _edit_latents(flow_pipe, image, prompt, prompt, source_guidance=3.5, target_guidance=3.5)
    assert (z - x0).abs().max().item() < 1e-5
    round_trip, edited = decode_latents(flow_pipe, x0), decode_latents(flow_pipe, z)
    assert psnr(edited, round_trip) > 60
    print(f"zero edit: PSNR vs input {psnr(edited, image):.2f} dB (VAE round trip {psnr(round_trip, image):.2f} dB)")
    assert psnr(edited, image) > 25  # the trained VAE's round trip of a 64 px scene
    # The paper's guidances differ (3.5 / 13.5): then even equal prompts move the latent (stronger guidance).
    _, z_default = _edit_latents(flow_pipe, image, prompt, prompt)
    assert (z_default - x0).abs().max().item() > 1e-2


def test_sampling_branch_is_the_stock_sampler(flow_pipe, scene):
    """n_min = n_max = steps: no edit steps, the target is sampled from pure noise as the stock pipeline does."""
    image, _ = scene
    steps, prompt = 6, "a blue square"
    x0, z = _edit_latents(flow_pipe, image, "a red circle", prompt, steps=steps, n_max=steps, n_min=steps,
                          target_guidance=4.0)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    stock = flow_pipe(prompt, latents=eps, num_inference_steps=steps, guidance_scale=4.0, height=64, width=64,
                      output_type="latent").images
    torch.testing.assert_close(z, stock, atol=1e-4, rtol=1e-4)


def test_different_prompts_change_the_image(sd3_dir, tmp_path):
    from agsm.sample import load_pipeline

    pipe = load_pipeline(sd3_dir)
    image = np.full((32, 32, 3), 255, np.uint8)
    image[8:20, 10:22] = (220, 30, 30)
    image = Image.fromarray(image)
    same = edit(pipe, image, "a red square", "a red square", steps=10, source_guidance=3.5, target_guidance=3.5,
                progress=False)
    edited = edit(pipe, image, "a red square", "a blue circle", steps=10, progress=False)
    assert edited.size == image.size
    assert np.abs(np.asarray(edited, float) - np.asarray(same, float)).max() > 10


@pytest.mark.parametrize("options, message", [
    ({"steps": 10, "n_max": 11}, "n_max=11 exceeds steps=10"),
    ({"n_max": 5, "n_min": 6}, r"n_min=6 must be an integer in \[0, n_max=5\]"),
    ({"steps": 0}, "steps=0 must be an integer >= 1"),
    ({"n_avg": 0}, "n_avg=0"),
    ({"target_guidance": 0.5}, "target_guidance=0.5 must be >= 1"),
    ({"strength": 0.5}, r"flowedit has no option\(s\) \['strength'\]; its options are"),
])
def test_bad_options_are_refused(flow_pipe, options, message):
    with pytest.raises(ValueError, match=message):
        edit_options(flow_pipe, **options)


def test_defaults_and_scaled_start(flow_pipe):
    _, opts = edit_options(flow_pipe)
    assert (opts.steps, opts.n_max, opts.start_step, opts.source_guidance, opts.target_guidance) == (50, 33, 18, 3.5, 13.5)
    assert edit_options(flow_pipe, steps=25)[1].n_max == 16


def test_wrong_method_and_size_are_refused(flow_pipe, scene):
    with pytest.raises(ValueError, match=r"works on .*sd15.* this one is sd3; use one of \['flowalign', 'flowedit', 'rf_inversion'\]"):
        edit_options(flow_pipe, method="ddim_inversion")
    with pytest.raises(ValueError, match="not a multiple of 16"):
        edit(flow_pipe, scene[0].resize((60, 60)), "a red circle", "a blue circle")


def test_option_text_from_the_command_line_takes_the_fields_type(flow_pipe):
    from agsm.editing.cli import options_from_args

    args = argparse.Namespace(steps=None, option=["n_avg=2", "target-guidance=9.5"])
    method, opts = edit_options(flow_pipe, "flowedit", **options_from_args(args))
    assert (method, opts.n_avg, opts.target_guidance) == ("flowedit", 2, 9.5)
    with pytest.raises(ValueError, match="n_avg='two' is not of type int"):
        edit_options(flow_pipe, "flowedit", n_avg="two")
    with pytest.raises(ValueError, match="is not NAME=VALUE"):
        options_from_args(argparse.Namespace(option=["n_avg"]))
