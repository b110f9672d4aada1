"""Objectives: pure tensor math (`agsm_targets`, `softrepa_loss`) and one thin step per method."""
from .agsm import agsm_step, agsm_targets
from .dsm import dsm_step
from .pairs import PairBatch
from .softrepa import softrepa_loss, softrepa_step

STEPS = {"agsm": agsm_step, "softrepa": softrepa_step, "dsm": dsm_step}

__all__ = ["agsm_targets", "softrepa_loss", "agsm_step", "softrepa_step", "dsm_step", "PairBatch", "STEPS"]
