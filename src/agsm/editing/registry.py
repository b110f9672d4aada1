"""The editing methods by name: each method's options (a dataclass whose defaults are its paper's), the
architectures it runs on, and the function that edits a latent.

Every editor's function has one signature, `(pipe, x0, source, target, options, generator, progress) -> latents`:
x0 the source image's latent [1, C, h, w], source and target the prompts' conditioning (conditioning.py), the
generator for stochastic methods (deterministic ones ignore it). A new editor is one module beside this one and
one line in EDITORS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .ddim_inversion import DDIMInversionOptions, ddim_edit_latents
from .direct_inversion import DirectInversionOptions, direct_inversion_latents
from .flowalign import FlowAlignOptions, flowalign_latents
from .flowedit import FlowEditOptions, flowedit_latents
from .masactrl import MasaCtrlOptions, masactrl_latents
from .pnp import PnPOptions, pnp_latents
from .rf_inversion import RFInversionOptions, rf_inversion_latents


@dataclass(frozen=True)
class Editor:
    name: str
    options: type  # a dataclass; its field defaults are the method's published settings
    architectures: tuple[str, ...]  # pipeline_architecture() values it runs on
    latents: Callable  # (pipe, x0, source, target, options, generator, progress) -> edited latent


EDITORS: dict[str, Editor] = {e.name: e for e in (
    Editor("flowedit", FlowEditOptions, ("sd3",), flowedit_latents),
    Editor("rf_inversion", RFInversionOptions, ("sd3",), rf_inversion_latents),
    Editor("flowalign", FlowAlignOptions, ("sd3",), flowalign_latents),
    Editor("ddim_inversion", DDIMInversionOptions, ("sd15", "sdxl"), ddim_edit_latents),
    Editor("pnp", PnPOptions, ("sd15", "sdxl"), pnp_latents),
    Editor("masactrl", MasaCtrlOptions, ("sd15", "sdxl"), masactrl_latents),
    Editor("direct_inversion", DirectInversionOptions, ("sd15", "sdxl"), direct_inversion_latents),
)}
DEFAULT_EDITOR = {"sd3": "flowedit", "sd15": "ddim_inversion", "sdxl": "ddim_inversion"}
