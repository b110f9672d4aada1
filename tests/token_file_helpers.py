"""Shared by the token loading tests: fresh stock pipelines from the fixture folders, random token files for them,
and a few tiny images."""
from pathlib import Path

import torch

from agsm.tokens.token_file import save_tokens
from agsm.tokens import SoftTokens

PROMPTS = ["a red circle", "two blue squares"]


def fresh_pipeline(path):
    from agsm.backbones.base import load_stock_pipeline

    pipe = load_stock_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(pipe, seed=0, steps=4):
    g = torch.Generator().manual_seed(seed)
    return pipe(PROMPTS, num_inference_steps=steps, guidance_scale=5.0, generator=g, output_type="np").images


def write_token_file(folder, pipe, num_sets=2, scale=0.5, blocks=3, stages="down,mid", seed=0,
                     name="soft_tokens.safetensors") -> Path:
    """Random tokens for `pipe` (UNet: `stages`; MM-DiT: 4 per block in the first `blocks`) saved in `folder`.
    The pipeline is only read (a backbone adapter would add its own hooks to it)."""
    from agsm.pipelines import _model_info

    torch.manual_seed(seed)
    info = _model_info(pipe)
    per_model = blocks if info["family"] == "mmdit" else 1
    tokens = SoftTokens(4 * per_model, info["token_width"], num_sets=num_sets, init_std=scale)
    placement = {"stages": stages} if info["family"] == "unet" else {"blocks": str(blocks)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    return save_tokens(Path(folder) / name, tokens, info, placement, "agsm", {}, 0)
