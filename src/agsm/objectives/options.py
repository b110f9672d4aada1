"""What every method's options share (MethodOptions), and what the soft-token family shares (TokenMethodOptions).

Each method's own options subclass one of these in its module (objectives/<method>.py); the `method` section of a
run's config is that dataclass. Each checks itself on creation and names the option, the value and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

NAME_HELP = ("the training objective: agsm | softrepa | dsm (soft tokens); dpo | inpo | spo (the backbone itself, as "
             "the `tune` section says: preference optimisation, docs/preference.md)")
HARD_NEGATIVE_KINDS = ["color", "shape", "count", "relation"]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def method_name(name: str):
    """The `name` field of a method's options, defaulting to that method."""
    return field(default=name, metadata={"help": NAME_HELP})


@dataclass
class MethodOptions:
    name: str = method_name("")

    def __post_init__(self):
        own = type(self).__dataclass_fields__["name"].default
        check(self.name == own, f"method.name {self.name!r} does not match {type(self).__name__}, the options of "
              f"{own!r}; build the named method's options (training.config.from_dict does)")

    @property
    def num_token_sets(self) -> int:
        """How many token sets this method trains (its spec says: AGSM psi+ and psi-, others 1)."""
        from .registry import get_method

        return get_method(self.name).token_sets(self)


@dataclass
class TokenMethodOptions(MethodOptions):
    """Options of every soft-token method: how the batch's noise and negatives are drawn (training/loop.py's
    build_batch) and the EMA tokens (make_ema_tokens, TokenTrainable.after_step)."""

    noise_sharing: str = field(default="image", metadata={
        "help": "one t and noise per image (image, the paper) or for the whole batch (batch, the public code)"})
    hard_negatives: float = field(default=0.0, metadata={
        "help": "beyond the paper: this fraction of each image's K - 1 negatives is replaced by its own caption "
                "with one attribute changed (data/perturb.py); 0 to 1"})
    hard_negative_kinds: list[str] = field(default_factory=lambda: list(HARD_NEGATIVE_KINDS), metadata={
        "help": "which attributes a hard negative may change: a subset of color, shape, count, relation"})
    bradley_terry: bool = field(default=False, metadata={"help": "ablation: one negative per image (K = 2)"})
    ema_decay: float = field(default=0.9999, metadata={
        "help": "decay of the EMA tokens (AGSM's targets; soft_tokens_ema.safetensors), updated every step (public "
                "code 0.9999)"})
    ema_init: str = field(default="copy", metadata={
        "help": "EMA tokens at step 0: copy (of the online tokens) | independent (their own normal(0, init_std) "
                "draw, public code: keeps the targets' reference near the plain model for thousands of steps)"})

    def __post_init__(self):
        super().__post_init__()
        check(self.noise_sharing in ("image", "batch"),
              f"method.noise_sharing {self.noise_sharing!r} is not one of 'image', 'batch'")
        check(self.ema_init in ("copy", "independent"),
              f"method.ema_init {self.ema_init!r} is not one of 'copy', 'independent'")
        check(0.0 <= self.hard_negatives <= 1.0, f"method.hard_negatives {self.hard_negatives} must be in [0, 1]")
        bad = sorted(set(self.hard_negative_kinds) - set(HARD_NEGATIVE_KINDS))
        check(not bad and bool(self.hard_negative_kinds), f"method.hard_negative_kinds {self.hard_negative_kinds} "
              f"must be a non-empty subset of {HARD_NEGATIVE_KINDS}")
        check(0.0 <= self.ema_decay < 1.0, f"method.ema_decay {self.ema_decay} must be in [0, 1)")
