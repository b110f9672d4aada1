"""The training methods by name: one MethodSpec each, registered by the module that holds its step.

A spec says everything the trainer (training/loop.py, training/backbone_trainable.py) and the config
(training/config.py) need to know about a method, so neither branches on a method's name:

    name         what `method.name` says
    options      its config dataclass (a subclass of objectives/options.py's MethodOptions): the `method` section
    step         step(denoiser, batch, options, generator) -> (loss, logs)
    data         the batch the step takes: captions (a PairBatch of images x captions), pairs (a PreferenceBatch of
                 preferred and dispreferred images), prompts (a PromptBatch: the method samples its own images)
    trains       tokens (soft tokens on a frozen backbone) | backbone (a LoRA or the whole denoiser, section `tune`)
    token_sets   options -> how many token sets the tokens hold (AGSM: psi+ and psi-)
    unet_only    why the method needs a UNet backbone ('' when any backbone does)
    batch_coupling  how the loss ties a batch's samples together ('' when it is a mean of per-sample losses): gradient
                 accumulation (train.gradient_accumulation_steps) then cannot equal one larger batch, and says so
    about        one line for `agsm train --help`

Adding a method is one file: its options, its step, and a `register(MethodSpec(...))` at the bottom; importing
`agsm.objectives` registers the built-in six.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from .options import MethodOptions, TokenMethodOptions

DATA_CHOICES = ("captions", "pairs", "prompts")
TRAINS_CHOICES = ("tokens", "backbone")


def one_token_set(options) -> int:
    return 1


@dataclass(frozen=True)
class MethodSpec:
    name: str
    options: type
    step: Callable
    data: str
    trains: str
    token_sets: Callable[[MethodOptions], int] = one_token_set
    unet_only: str = ""
    about: str = ""
    batch_coupling: str = ""

    def __post_init__(self):
        if self.data not in DATA_CHOICES:
            raise ValueError(f"method {self.name!r}: data {self.data!r} is not one of {', '.join(DATA_CHOICES)}")
        if self.trains not in TRAINS_CHOICES:
            raise ValueError(f"method {self.name!r}: trains {self.trains!r} is not one of "
                             f"{', '.join(TRAINS_CHOICES)}")
        if not (dataclasses.is_dataclass(self.options) and issubclass(self.options, MethodOptions)):
            raise ValueError(f"method {self.name!r}: options {self.options!r} must be a dataclass subclassing "
                             "objectives.options.MethodOptions")
        # the loop's batch builder and EMA read the token family's shared options (objectives/options.py)
        if self.trains == "tokens" and not issubclass(self.options, TokenMethodOptions):
            raise ValueError(f"method {self.name!r} trains tokens: its options must subclass TokenMethodOptions")
        if self.trains == "tokens" and self.data != "captions":
            raise ValueError(f"method {self.name!r} trains tokens, which train on captions; data is {self.data!r}")
        default_name = {f.name: f.default for f in dataclasses.fields(self.options)}["name"]
        if default_name != self.name:
            raise ValueError(f"method {self.name!r}: its options' name defaults to {default_name!r}; give "
                             f"{self.options.__name__} `name: str = field(default={self.name!r}, ...)`")


_SPECS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; its name must be new (unregister first to replace one)."""
    if spec.name in _SPECS:
        raise ValueError(f"method {spec.name!r} is already registered; unregister({spec.name!r}) first")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _SPECS.pop(name, None)


def get_method(name: str) -> MethodSpec:
    if name not in _SPECS:
        raise ValueError(f"method.name {name!r} is not one of {', '.join(repr(n) for n in _SPECS)}")
    return _SPECS[name]


def method_names() -> tuple[str, ...]:
    """The registered names, in registration order (the built-in six: agsm, softrepa, dsm, dpo, inpo, spo)."""
    return tuple(_SPECS)
