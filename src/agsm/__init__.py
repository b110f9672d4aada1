"""agsm: Alignment-Guided Score Matching soft tokens for diffusers pipelines."""
from .objectives import agsm_targets, softrepa_loss
from .pipelines import load_soft_tokens, remove_soft_tokens

__version__ = "0.1.0"
__all__ = ["load_soft_tokens", "remove_soft_tokens", "agsm_targets", "softrepa_loss", "__version__"]
