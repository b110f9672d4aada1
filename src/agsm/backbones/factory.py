"""The one place that chooses a backbone adapter for a pipeline folder (it imports the concrete adapters; they
import only base.py, so there is no import circle)."""
from __future__ import annotations

import torch

from .base import load_stock_pipeline
from .model_source import resolve_model
from .variants import BackboneVariant, apply_variant, trained_on
from .mmdit import MMDiTBackbone
from .unet import UNetBackbone


def load_backbone(path, dtype: torch.dtype = torch.float32, resolution: int | None = None,
                  variant: BackboneVariant | None = None, *, revision: str | None = None,
                  weights_variant: str | None = None, **flow_options):
    """The adapter for the pipeline at `path`: UNetBackbone (SD1.5, SDXL) or MMDiTBackbone (SD3, SD3.5).

    `path`: a local folder or a Hugging Face Hub id, at `revision` with diffusers' `weights_variant` (a
    model_source.ModelSource carries both; model_source.resolve_model has the rules). `variant`: another denoiser
    and/or a LoRA in place of the model's own (variants.py); what the backbone is made of (for a Hub id: the id,
    revision and snapshot commit too) is kept as `backbone.trained_on` for the token file."""
    source = resolve_model(path, revision, weights_variant)
    pipe = apply_variant(load_stock_pipeline(source.folder, dtype, source.weights_variant), variant)
    backbone = _adapter(pipe, source.name, resolution, **flow_options)
    provenance = source.record()
    if not source.hub_id:
        provenance.pop("model")  # a local folder is recorded by its folder's name (variants.trained_on)
    backbone.trained_on = {**trained_on(backbone.pipe, source.folder, variant), **provenance}
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
