"""Alignment-guided sampling: AGSM's training target applied by the frozen model at sampling (docs/alignment_guidance.md).

`align_guidance(pipe, negatives, gamma, temperature, where)` is the Python entry; `make_negatives` builds the
negatives (hard | inbatch); `AlignmentGuidance` holds the settings for tools that apply them to several calls
(`agsm sample --align-guidance`, `agsm ceiling`).
"""
from .alignment import WHERE, AlignmentGuidance, align_guidance
from .negatives import DEFAULT_K, NEGATIVE_KINDS, hard_negatives, inbatch_negatives, make_negatives

__all__ = ["AlignmentGuidance", "align_guidance", "make_negatives", "hard_negatives", "inbatch_negatives",
           "WHERE", "NEGATIVE_KINDS", "DEFAULT_K"]
