"""Objectives: pure tensor math (`agsm_targets`, `softrepa_loss`, `diffusion_dpo_loss`, `spo_loss` ...), one thin step
per method, and each method's options and spec (objectives/registry.py).

Importing this package registers the built-in six, in this order: agsm, softrepa, dsm (soft tokens; their batch is a
PairBatch of images x captions), dpo, inpo (the backbone, on a PreferenceBatch of pairs), spo (the backbone, on a
PromptBatch: it samples its own images). `get_method(name)` gives a method's spec; `method_names()` lists them.
"""
from .agsm import AgsmOptions, agsm_step, agsm_targets
from .softrepa import SoftrepaOptions, softrepa_loss, softrepa_step
from .dsm import DsmOptions, dsm_step
from .dpo import DpoOptions, diffusion_dpo_loss, dpo_step
from .inpo import InpoOptions, inpo_step
from .spo import SpoOptions, spo_loss, spo_step
from .options import MethodOptions, TokenMethodOptions
from .pairs import PairBatch
from .registry import MethodSpec, get_method, method_names, register, unregister

__all__ = ["agsm_targets", "softrepa_loss", "diffusion_dpo_loss", "spo_loss", "agsm_step", "softrepa_step",
           "dsm_step", "dpo_step", "inpo_step", "spo_step", "PairBatch", "MethodOptions", "TokenMethodOptions",
           "AgsmOptions", "SoftrepaOptions", "DsmOptions", "DpoOptions", "InpoOptions", "SpoOptions", "MethodSpec",
           "get_method", "method_names", "register", "unregister"]
