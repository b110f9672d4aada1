"""DDIM inversion editing on UNet pipelines: inversion reconstructs, resampling is the stock sampler, edits edit."""
import pytest
import torch
from PIL import Image

from agsm.editing import DDIMInversionOptions, edit, edit_options
from agsm.editing.conditioning import encode_prompt
from agsm.editing.ddim_inversion import invert, regenerate
from agsm.editing.latents import decode_latents, encode_image
from agsm.editing.preservation import psnr


def test_inversion_then_regeneration_reconstructs(shapes_pipe, scene):
    """On the shipped (trained) SD1.5-architecture model, same prompt, no guidance, 50 steps."""
    image, prompt = scene
    x0 = encode_image(shapes_pipe, image)
    cond = encode_prompt(shapes_pipe, prompt, (64, 64))
    opts = DDIMInversionOptions(steps=50, source_guidance=1.0, target_guidance=1.0)
    x_t = invert(shapes_pipe, x0, cond, opts, progress=False)
    assert ((x_t - x0).norm() / x0.norm()).item() > 0.5  # it really travelled towards noise
    x_rec = regenerate(shapes_pipe, x_t, cond, opts, progress=False)
    rel = ((x_rec - x0).norm() / x0.norm()).item()
    rebuilt, round_trip = decode_latents(shapes_pipe, x_rec), decode_latents(shapes_pipe, x0)
    print(f"DDIM inversion: relative latent error {rel:.4f}, PSNR vs VAE round trip {psnr(rebuilt, round_trip):.2f} dB, "
          f"vs input {psnr(rebuilt, image):.2f} dB")
    assert rel < 0.05
    assert psnr(rebuilt, round_trip) > 30


@pytest.mark.parametrize("model", ["sd15_dir", "sdxl_dir"])
def test_resampling_is_the_stock_ddim_sampler(model, request):
    """From the same noise, regenerate() with guidance equals the stock pipeline's own DDIM sampling
    (SDXL: pooled embeddings and time ids from the pipeline's methods)."""
    from agsm.sample import load_pipeline

    pipe = load_pipeline(request.getfixturevalue(model))
    prompt, steps, guidance = "a blue square", 5, 5.0
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = regenerate(pipe, noise, encode_prompt(pipe, prompt, (32, 32)),
                      DDIMInversionOptions(steps=steps, target_guidance=guidance), progress=False)
    stock = pipe(prompt, latents=noise, num_inference_steps=steps, guidance_scale=guidance, height=32, width=32,
                 output_type="latent").images
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_colour_edit_on_the_shapes_model(shapes_pipe):
    """A single red circle edited to blue: the judge sees a blue circle, and the background stays white."""
    from agsm.shapes.render import render
    from agsm.shapes.spec import Scene, ShapeObject
    from agsm.shapes.verify import verify

    image = render(Scene((ShapeObject("circle", "red", 20, 24, 14),)))
    edited = edit(shapes_pipe, image, "a red circle", "a blue circle", progress=False)
    unchanged = edit(shapes_pipe, image, "a red circle", "a red circle", target_guidance=1.0, progress=False)
    assert verify(edited, "a blue circle").correct
    assert not verify(edited, "a red circle").correct
    assert psnr(unchanged, image) > psnr(edited, image) + 3


def test_bad_options_are_refused(shapes_pipe):
    with pytest.raises(ValueError, match="ddim_inversion has no option"):
        edit_options(shapes_pipe, n_max=3)
    with pytest.raises(ValueError, match="source_guidance=0 must be >= 1"):
        edit_options(shapes_pipe, source_guidance=0)
    with pytest.raises(ValueError, match="steps=2000 exceeds"):
        edit(shapes_pipe, Image.new("RGB", (64, 64), "white"), "a circle", "a square", steps=2000, progress=False)
    with pytest.raises(ValueError, match="works on .*sd3.* this one is sd15"):
        edit_options(shapes_pipe, method="flowedit")
