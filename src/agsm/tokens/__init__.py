"""Soft tokens and their one home of injection: `SoftTokens` (the learned vectors) and an injector per
denoiser family (UNet cross-attention processors; MM-DiT block hooks). The loaded adapters of a pipeline's denoiser
are kept on that module (adapters.py), and options per guidance branch read the drawing pipeline (branches.py)."""
from .injector import CallState, TokenInjector, TokenProcessor
from .mmdit import MMDiTTokenInjector
from .soft_tokens import NEGATIVE, POSITIVE, SoftTokens
from .unet import STAGE_PREFIXES, UNetTokenInjector

__all__ = ["CallState", "MMDiTTokenInjector", "NEGATIVE", "POSITIVE", "STAGE_PREFIXES", "SoftTokens",
           "TokenInjector", "TokenProcessor", "UNetTokenInjector", "install_tokens", "placement_for"]


def placement_for(family: str, stages=("down", "mid"), blocks: int = 5) -> dict[str, str]:
    """Where tokens go, as stored in the token file: UNet stages, or the number of leading MM-DiT blocks."""
    if family == "unet":
        return {"stages": ",".join(stages)}
    if family == "mmdit":
        return {"blocks": str(blocks)}
    raise ValueError(f"unknown backbone family {family!r}; expected 'unet' or 'mmdit'")


def install_tokens(model, family: str, tokens: SoftTokens, placement: dict[str, str]) -> TokenInjector:
    """Install `tokens` into a denoiser (UNet or SD3 transformer) where `placement` says."""
    if family == "unet":
        return UNetTokenInjector(model, tokens, stages=placement["stages"].split(","))
    if family == "mmdit":
        return MMDiTTokenInjector(model, tokens, num_blocks=int(placement["blocks"]))
    raise ValueError(f"unknown backbone family {family!r}; expected 'unet' or 'mmdit'")
