"""The UNet adapter's diffusion maths agrees with the stock scheduler's."""
import torch

from agsm.backbones.unet import UNetBackbone
from agsm.backbones.architectures import tiny_sd15_pipeline, tiny_sdxl_pipeline


def test_noise_and_targets_match_the_scheduler():
    for kind in ("epsilon", "v_prediction"):
        pipe = tiny_sd15_pipeline(prediction_type=kind)
        backbone = UNetBackbone(pipe)
        g = torch.Generator().manual_seed(0)
        x0, eps = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 4, 16, 16, generator=g)
        t = torch.tensor([0, 400, 999])
        torch.testing.assert_close(backbone.add_noise(x0, eps, t), pipe.scheduler.add_noise(x0, eps, t))
        expected = eps if kind == "epsilon" else pipe.scheduler.get_velocity(x0, eps, t)
        torch.testing.assert_close(backbone.target(x0, eps, t), expected)


def test_sdxl_text_conditioning_is_the_pipelines_own():
    pipe = tiny_sdxl_pipeline()
    backbone = UNetBackbone(pipe)
    cond = backbone.encode_text(["a red circle", "two blue squares"])
    embeds, _, pooled, _ = pipe.encode_prompt(["a red circle", "two blue squares"], do_classifier_free_guidance=False)
    assert backbone.architecture == "sdxl" and backbone.token_width == 64
    torch.testing.assert_close(cond.embeds, embeds)
    torch.testing.assert_close(cond.pooled, pooled)
