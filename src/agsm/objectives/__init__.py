"""Objectives: pure tensor math (`agsm_targets`, `softrepa_loss`, `diffusion_dpo_loss`, `spo_loss` ...) and one
thin step per method.

STEPS names each method's step; DATA_KINDS the batch it takes: captions (a PairBatch of images x captions, for the
soft-token methods), pairs (a PreferenceBatch of preferred and dispreferred images), prompts (a PromptBatch: SPO
samples its own images).
"""
from .agsm import agsm_step, agsm_targets
from .dpo import diffusion_dpo_loss, dpo_step
from .dsm import dsm_step
from .inpo import inpo_step
from .pairs import PairBatch
from .softrepa import softrepa_loss, softrepa_step
from .spo import spo_loss, spo_step

STEPS = {"agsm": agsm_step, "softrepa": softrepa_step, "dsm": dsm_step, "dpo": dpo_step, "inpo": inpo_step,
         "spo": spo_step}
DATA_KINDS = {"agsm": "captions", "softrepa": "captions", "dsm": "captions", "dpo": "pairs", "inpo": "pairs",
              "spo": "prompts"}

__all__ = ["agsm_targets", "softrepa_loss", "diffusion_dpo_loss", "spo_loss", "agsm_step", "softrepa_step",
           "dsm_step", "dpo_step", "inpo_step", "spo_step", "PairBatch", "STEPS", "DATA_KINDS"]
