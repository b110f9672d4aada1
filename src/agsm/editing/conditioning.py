"""Text conditioning and guided predictions for the editing methods, through the pipeline's own modules.

Each prompt is encoded once with the pipeline's `encode_prompt` into both guidance branches; a
prediction call batches several (latents, prompt, guidance) requests into one denoiser forward, ordered
[unconditional halves..., conditional halves...] as the stock pipelines order them, so token options
that act per guidance branch (`load_soft_tokens(..., uncond_tokens=...)`) see the same layout.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..pipelines import denoiser_of, pipeline_architecture


@dataclass(frozen=True)
class PromptCond:
    """One prompt in both guidance branches, stacked [unconditional, conditional] on dim 0."""

    embeds: torch.Tensor                  # [2, L, D]
    pooled: torch.Tensor | None = None    # [2, P]: SDXL and SD3
    time_ids: torch.Tensor | None = None  # [2, 6]: SDXL's size and crop conditioning


@torch.no_grad()
def encode_prompt(pipe, prompt: str, size: tuple[int, int]) -> PromptCond:
    """`prompt` with the stock pipeline's default negative (empty prompt, or SDXL's zeros); size = (h, w)."""
    arch = pipeline_architecture(pipe)
    device = denoiser_of(pipe).device
    if arch == "sd15":
        cond, uncond = pipe.encode_prompt(prompt, device, 1, True)
        return PromptCond(torch.cat([uncond, cond]))
    if arch == "sdxl":
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(prompt, device=device,
                                                                 do_classifier_free_guidance=True)
        # The stock pipeline's own helper, with what it passes for an uncropped image of this size.
        ids = pipe._get_add_time_ids(tuple(size), (0, 0), tuple(size), dtype=cond.dtype,
                                     text_encoder_projection_dim=int(pooled.shape[-1]))
        return PromptCond(torch.cat([uncond, cond]), torch.cat([uncond_pooled, pooled]), ids.repeat(2, 1).to(device))
    cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(prompt, None, None, device=device,
                                                             do_classifier_free_guidance=True)
    return PromptCond(torch.cat([uncond, cond]), torch.cat([uncond_pooled, pooled]))


@contextlib.contextmanager
def _guidance_flag(pipe, guided: bool):
    """Let `pipe.do_classifier_free_guidance` say whether this call holds unconditional halves.

    Soft-token branch options read that property to split a batch into [uncond, cond] halves; the
    stock pipelines set it from `_guidance_scale` in __call__, which editing code does not go through.
    """
    missing = object()
    previous = pipe.__dict__.get("_guidance_scale", missing)
    pipe._guidance_scale = 2.0 if guided else 1.0
    try:
        yield
    finally:
        if previous is missing:
            del pipe._guidance_scale
        else:
            pipe._guidance_scale = previous


def _denoise(pipe, x: torch.Tensor, t: torch.Tensor, embeds, pooled, time_ids) -> torch.Tensor:
    """One stock denoiser forward on a batch; the trajectory stays float32 whatever the model's dtype."""
    model = denoiser_of(pipe)
    x = x.to(model.dtype)
    timestep = t.to(x.device).reshape(-1).expand(x.shape[0])
    if getattr(pipe, "unet", None) is not None:
        added = {"text_embeds": pooled, "time_ids": time_ids} if time_ids is not None else None
        out = model(x, timestep, encoder_hidden_states=embeds, added_cond_kwargs=added).sample
    else:
        out = model(hidden_states=x, timestep=timestep, encoder_hidden_states=embeds,
                    pooled_projections=pooled, return_dict=False)[0]
    return out.float()


@torch.no_grad()
def guided_predictions(pipe, t: torch.Tensor, requests: list[tuple[torch.Tensor, PromptCond, float]]) -> list[torch.Tensor]:
    """For each (latents [1, C, H, W], prompt, w): uncond + w (cond - uncond), all in one forward.

    With every w == 1 only conditional branches run (as a stock pipeline with guidance off does);
    otherwise every request gets both branches (w == 1 then reduces to its conditional prediction).
    """
    guided = any(w != 1.0 for _, _, w in requests)
    branches = (0, 1) if guided else (1,)  # 0 = unconditional, 1 = conditional

    def stacked(field: str) -> torch.Tensor | None:  # [branches * requests, ...], branch-major
        if getattr(requests[0][1], field) is None:
            return None
        return torch.cat([getattr(c, field)[b:b + 1] for b in branches for _, c, _ in requests])

    x = torch.cat([lat for _ in branches for lat, _, _ in requests])
    embeds, pooled, time_ids = stacked("embeds"), stacked("pooled"), stacked("time_ids")
    with _guidance_flag(pipe, guided):
        out = _denoise(pipe, x, t, embeds, pooled, time_ids)
    n = len(requests)
    if not guided:
        return list(out.split(1))
    uncond, cond = out[:n], out[n:]
    return [uncond[i:i + 1] + w * (cond[i:i + 1] - uncond[i:i + 1]) for i, (_, _, w) in enumerate(requests)]
