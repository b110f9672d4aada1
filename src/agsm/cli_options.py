"""The command-line option groups the agsm commands share, each declared in one place. A command calls a group's
function with what differs for it (whether --model is required, which help wording, which options it takes);
every flag keeps its dest, type, choices and default in every command.

    add_model_options     --model, --model-revision, --weights-variant, --tokens, --uncond-tokens
                                                                  the pipeline (a folder or a Hub id) and its tokens
    add_sampler_options   --steps, --guidance, --size             overrides of the model's recommended sampler
    add_variant_options   --denoiser, --lora, --lora-scale, --unfused-lora    (defined in backbones/variants.py)
    add_device_options    --device, --dtype                       (defined in utils/devices.py)
    add_overwrite_option  --overwrite                             start a resumable --out folder afresh

The last two stay next to the code that reads their options back (variant_from_args, resolve_device_and_dtype), so
a change to an option and to its reader is one edit; they are imported here so that every group is found in this
module. The editing methods' own options (--method, the edit's --steps and guidances ...) are
editing.cli.add_edit_options: they configure one editing method, not the sampler.
"""

from __future__ import annotations

import argparse

from .backbones.model_source import ModelSource
from .backbones.sampler_defaults import GUIDANCE_HELP, STEPS_HELP
from .backbones.variants import add_variant_options
from .utils.devices import add_device_options

__all__ = ["add_model_options", "add_sampler_options", "add_variant_options", "add_device_options", "add_overwrite_option",
           "PIPELINE_HELP", "SHAPES_PIPELINE_HELP", "TOKENS_HELP", "HUB_TOKENS_HELP", "UNCOND_TOKENS_HELP",
           "STEPS_HELP", "GUIDANCE_HELP", "NATIVE_SIZE_HELP"]

PIPELINE_HELP = ("local diffusers pipeline folder (SD1.5, SDXL or SD3), or a Hugging Face Hub id (owner/name) "
                 "fetched into the Hub cache; HF_HUB_OFFLINE=1: from the cache only")
SHAPES_PIPELINE_HELP = "a 64 px ShapesWorld pipeline folder (e.g. the shipped src/agsm/shapes/models/sd15-tiny)"
TOKENS_HELP = "soft_tokens.safetensors (or its folder); omit for the base model"
# Every --tokens goes through load_soft_tokens, which also takes a Hub repo id (docs/loading.md); `agsm sample`'s help
# says so, the other commands keep the shorter text.
HUB_TOKENS_HELP = ("soft_tokens.safetensors, its folder, or a Hugging Face Hub repo id holding it; omit for the base "
                   "model")
UNCOND_TOKENS_HELP = "which token set the unconditional branch sees, with --tokens (default positive)"
UNCOND_TOKENS_CHOICES = ("positive", "negative", "none")  # load_soft_tokens' uncond_tokens
NATIVE_SIZE_HELP = "image side in pixels (default: the model's native size)"


def add_model_options(parser, *, model_help: str | None = PIPELINE_HELP, required: bool = True, tokens: bool = True,
                      tokens_help: str = TOKENS_HELP, uncond_tokens: bool = True,
                      uncond_tokens_help: str = UNCOND_TOKENS_HELP) -> None:
    """--model (required unless `required` is False; then it defaults to None) with --model-revision and
    --weights-variant (carried in args.model, see _ModelPart), and unless switched off --tokens (default None: the
    base model) and --uncond-tokens (positive, negative or none; default positive). A command that samples without
    tokens passes tokens=False, uncond_tokens=False."""
    parser.add_argument("--model", required=required, help=model_help, action=_ModelPart)
    # diffusers calls these revision and variant; --variant would read as agsm's own backbone variant (--denoiser,
    # --lora), so both carry a prefix
    parser.add_argument("--model-revision", action=_ModelPart, metavar="REVISION",
                        help="with a Hub id as --model: the branch, tag or commit to load (default main)")
    parser.add_argument("--weights-variant", action=_ModelPart, metavar="VARIANT",
                        help="diffusers' weights variant of --model, e.g. fp16 (its *.fp16.safetensors files)")
    if tokens:
        parser.add_argument("--tokens", help=tokens_help)
    if uncond_tokens:
        parser.add_argument("--uncond-tokens", default="positive", choices=UNCOND_TOKENS_CHOICES,
                            help=uncond_tokens_help)


class _ModelPart(argparse.Action):
    """--model, --model-revision, --weights-variant: each stores its value, then a revision or weights variant makes
    args.model a ModelSource (still the name as given, a str) that carries them to the loader, so every command
    passes them on without knowing of them. Rebuilt after each of the three: their order does not matter."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        model = getattr(namespace, "model", None)
        revision = getattr(namespace, "model_revision", None)
        weights_variant = getattr(namespace, "weights_variant", None)
        if model is not None:
            namespace.model = ModelSource(model, revision, weights_variant) if revision or weights_variant else model


def add_sampler_options(parser, *, steps: bool = True, steps_help: str = STEPS_HELP,
                        guidance_help: str = GUIDANCE_HELP, size: bool = False) -> None:
    """--steps (unless steps=False: a command whose --steps counts something else), --guidance and, with size=True,
    --size: all default to None, which leaves the choice to the model's recommended sampler (sampler.json), else
    its architecture's (backbones.sampler_defaults.resolve_sampler), and to its native image size."""
    if steps:
        parser.add_argument("--steps", type=int, help=steps_help)
    parser.add_argument("--guidance", type=float, help=guidance_help)
    if size:
        parser.add_argument("--size", type=int, help=NATIVE_SIZE_HELP)


def add_overwrite_option(parser) -> None:
    """--overwrite of the resumable evaluations (agsm.eval.resumable): without it, an --out folder holding a run with
    other settings is refused, naming each change, so a typo never deletes hours of images."""
    parser.add_argument("--overwrite", action="store_true",
                        help="start --out afresh when it holds a run with other settings (default: refuse, naming "
                             "each changed setting; the same settings resume)")
