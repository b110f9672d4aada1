"""Preference data and tools for the preference objectives (objectives/dpo.py, inpo.py, spo.py).

pair_data: (prompt, preferred image, dispreferred image) pairs, read like Pick-a-Pic and encoded once;
shapes_pairs: `agsm shapes pairs`, such pairs from a ShapesWorld model's own images and the exact judge;
scorers: the step-aware scorer SPO ranks candidates with (the judge, or any callable).
What those objectives train (a LoRA or the whole denoiser) lives with the other trainables: training/backbone_trainable.py.
"""
