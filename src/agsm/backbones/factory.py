"""The one place that chooses a backbone adapter for a pipeline folder (it imports the concrete adapters; they
import only base.py, so there is no import circle)."""
from __future__ import annotations

import torch

from .base import load_stock_pipeline
from .variants import BackboneVariant, apply_variant, trained_on
from .mmdit import MMDiTBackbone
from .unet import UNetBackbone


def load_backbone(path, dtype: torch.dtype = torch.float32, resolution: int | None = None,
                  variant: BackboneVariant | None = None, **flow_options):
    """The adapter for the pipeline at `path`: UNetBackbone (SD1.5, SDXL) or MMDiTBackbone (SD3, SD3.5).

    `variant`: another denoiser and/or a LoRA in place of the folder's own (variants.py); what the backbone is
    made of is kept as `backbone.trained_on` for the token file."""
    backbone = _adapter(apply_variant(load_stock_pipeline(path, dtype), variant), path, resolution, **flow_options)
    backbone.trained_on = trained_on(backbone.pipe, path, variant)
    return backbone


def _adapter(pipe, path, resolution: int | None, **flow_options):
    if getattr(pipe, "unet", None) is not None:
        if flow_options.get("timestep_sampling", "uniform") != "uniform":
            raise ValueError(f"model.timestep_sampling {flow_options['timestep_sampling']!r} applies to flow "
                             "backbones (SD3) only; UNet models sample timesteps uniformly")
        return UNetBackbone(pipe, resolution)
    if getattr(pipe, "transformer", None) is not None:
        return MMDiTBackbone(pipe, resolution, **flow_options)
    raise ValueError(f"{path} holds a {type(pipe).__name__}, which has neither a UNet nor a transformer; "
                     "agsm trains on SD1.5, SDXL and SD3 pipelines")
