"""Fixtures for the editing tests: the shipped ShapesWorld model, a flow (SD3) pipeline with its trained VAE,
rendered scenes and token files."""
from pathlib import Path

import pytest
import torch

SHAPES_MODEL = Path(__file__).resolve().parents[2] / "src" / "agsm" / "shapes" / "models" / "sd15-tiny"


@pytest.fixture(scope="session")
def shapes_model_dir():
    return SHAPES_MODEL


@pytest.fixture(scope="session")
def shapes_pipe():
    from agsm.sample import load_pipeline

    return load_pipeline(SHAPES_MODEL)


@pytest.fixture(scope="session")
def shapes_sd3_pipe():
    """The shipped, trained sd3-tiny ShapesWorld model (64 px): inversion errors mean something on it."""
    from agsm.sample import load_pipeline

    pipe = load_pipeline(SHAPES_MODEL.parent / "sd3-tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def flow_pipe(shapes_pipe):
    """An SD3 pipeline (random tiny MM-DiT, flow-matching scheduler) with the shipped model's trained VAE,
    so images survive the VAE round trip and PSNR against the input means something."""
    import copy

    from diffusers import StableDiffusion3Pipeline

    from agsm.backbones.architectures import tiny_sd3_pipeline

    tiny = tiny_sd3_pipeline()
    vae = copy.deepcopy(shapes_pipe.vae)
    vae.register_to_config(shift_factor=0.0)
    pipe = StableDiffusion3Pipeline(
        transformer=tiny.transformer, scheduler=tiny.scheduler, vae=vae, text_encoder=tiny.text_encoder,
        tokenizer=tiny.tokenizer, text_encoder_2=tiny.text_encoder_2, tokenizer_2=tiny.tokenizer_2,
        text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def scene():
    """A rendered two-object ShapesWorld scene (64 px) and its caption."""
    from agsm.shapes.render import render
    from agsm.shapes.scenes import sample_many

    smp = sample_many(1, 0, ("two_objects",))[0]
    return render(smp.scene), smp.prompt


@pytest.fixture(scope="session")
def make_token_file():
    return _make_token_file


def _make_token_file(folder, pipe, scale=0.5, blocks=3):
    """Random dual tokens saved as a token file for `pipe` (UNet: down+mid stages; MM-DiT: first `blocks`)."""
    from agsm.backbones.mmdit import MMDiTBackbone
    from agsm.backbones.unet import UNetBackbone
    from agsm.tokens.token_file import save_tokens
    from agsm.tokens import SoftTokens

    torch.manual_seed(0)
    backbone = UNetBackbone(pipe) if getattr(pipe, "unet", None) is not None else MMDiTBackbone(pipe)
    per_model = blocks if backbone.family == "mmdit" else 1
    tokens = SoftTokens(4 * per_model, backbone.token_width, num_sets=2, init_std=scale)
    placement = {"stages": "down,mid"} if backbone.family == "unet" else {"blocks": str(blocks)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    return save_tokens(Path(folder) / "soft_tokens.safetensors", tokens, backbone.describe(), placement, "agsm", {}, 0)
