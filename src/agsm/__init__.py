"""agsm: Alignment-Guided Score Matching soft tokens for diffusers pipelines.

The top-level names are imported on first use (a module __getattr__, PEP 562): `import agsm.cli` and
`agsm --version` must not pay for torch and diffusers, which the objectives and pipelines import.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the submodule that defines it
_LAZY = {"agsm_targets": "objectives", "softrepa_loss": "objectives",
         **{name: "pipelines" for name in ("SoftTokenAdapter", "list_soft_tokens", "load_soft_tokens",
                                           "set_soft_tokens_adapter", "set_soft_tokens_scale", "unload_soft_tokens")}}

__all__ = ["load_soft_tokens", "unload_soft_tokens", "set_soft_tokens_scale",
           "set_soft_tokens_adapter", "list_soft_tokens", "SoftTokenAdapter", "agsm_targets", "softrepa_loss",
           "__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agsm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
