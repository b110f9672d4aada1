"""agsm: Alignment-Guided Score Matching soft tokens for diffusers pipelines."""
from .objectives import agsm_targets, softrepa_loss
from .pipelines import (SoftTokenAdapter, list_soft_tokens, load_soft_tokens, set_soft_tokens_adapter,
                        set_soft_tokens_scale, unload_soft_tokens)

__version__ = "0.1.0"
__all__ = ["load_soft_tokens", "unload_soft_tokens", "set_soft_tokens_scale",
           "set_soft_tokens_adapter", "list_soft_tokens", "SoftTokenAdapter", "agsm_targets", "softrepa_loss",
           "__version__"]
