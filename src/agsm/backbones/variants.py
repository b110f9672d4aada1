"""Backbone variants: another denoiser (UNet or MM-DiT) and/or a LoRA on a stock pipeline, for training and sampling.

    variant = BackboneVariant(denoiser="dpo-sd15/unet", lora="spo-lora/", lora_scale=0.8, fuse_lora=True)
    apply_variant(pipe, variant)      # swaps pipe.unet's weights, then loads and fuses the LoRA
    denoiser_hash(pipe)               # a content hash of the denoiser as it now is (cached on the module)

Public preference-tuned checkpoints (Diffusion-DPO, SPO, InPO) ship either the denoiser alone, as a diffusers model
folder (`unet/` with config.json and diffusion_pytorch_model.safetensors, or the folder above it) or as one
safetensors file of its weights, or a LoRA in the peft / diffusers format (`pytorch_lora_weights.safetensors`, what
`pipe.load_lora_weights` reads). `agsm train` (model.denoiser, model.lora) and `agsm sample` / `agsm eval shapes`
(--denoiser, --lora) build their backbone through `apply_variant`, the one place that swaps it.

Every check runs before the pipeline is changed: a denoiser whose config or tensor names and shapes differ from the
pipeline's is refused with a message naming both. `fuse_lora` (the default) folds the LoRA into the weights and
drops the adapter layers, so the denoiser is a plain module again (soft tokens install into it as into the stock
one); unfused, the LoRA stays attached at `lora_scale`.

`denoiser_hash` identifies the backbone soft tokens were trained on (tokens/token_file.py records it; pipelines.py warns
when a pipeline's differs). It hashes up to HASH_SAMPLES evenly spaced values of every tensor of the denoiser's
state dict (with any unfused LoRA tensors), each rounded to bfloat16, so a model loaded in float32 and in bfloat16
hashes alike and hashing SDXL takes milliseconds; a fused LoRA or a fine-tune changes all values of the tensors it
touches, so they change the hash. The hash is cached on the module with each tensor's storage address and version
counter (an optimiser step bumps it); code that changes weights behind autograd's back (`.data` assignments, as LoRA
fusing does) calls `forget_content_hash` after it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger("agsm.variants")
HASH_SAMPLES = 4096
WEIGHTS_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
LORA_ADAPTER = "agsm_variant"
_HASH_ATTR = "_agsm_content_hash"  # (version signature, hash) on the denoiser module


@dataclass(frozen=True)
class BackboneVariant:
    """What replaces or changes the pipeline's denoiser; all None is the stock pipeline."""

    denoiser: str | None = None
    lora: str | None = None
    lora_scale: float = 1.0
    fuse_lora: bool = True

    def __post_init__(self):
        if not isinstance(self.lora_scale, (int, float)) or not torch.isfinite(torch.tensor(float(self.lora_scale))):
            raise ValueError(f"lora scale {self.lora_scale!r} must be a finite number (1 = as trained)")
        if self.lora_scale != 1.0 and not self.lora:
            raise ValueError(f"a lora scale ({self.lora_scale}) needs a LoRA (model.lora / --lora)")

    @property
    def is_stock(self) -> bool:
        return not self.denoiser and not self.lora

    def describe(self) -> dict:
        return asdict(self)


def denoiser_name(pipe) -> str:
    """'unet' or 'transformer': the pipeline component that denoises."""
    for name in ("unet", "transformer"):
        if getattr(pipe, name, None) is not None:
            return name
    raise TypeError(f"{type(pipe).__name__} has neither a UNet nor a transformer")


def apply_variant(pipe, variant: BackboneVariant | None):
    """Swap the denoiser's weights for `variant.denoiser`'s and attach (or fuse) `variant.lora`; returns `pipe`.

    The denoiser's weights are replaced in place (same module, same dtype and device), so modules that hold it, such
    as a backbone adapter, stay valid. Nothing changes when a check fails."""
    if variant is None or variant.is_stock:
        return pipe
    name = denoiser_name(pipe)
    model = getattr(pipe, name)
    if variant.denoiser:
        state = _read_denoiser(variant.denoiser, model, name)
        with torch.no_grad():
            model.load_state_dict({k: v.to(model.dtype) for k, v in state.items()}, strict=True)
        log.info("denoiser weights from %s", variant.denoiser)
    if variant.lora:
        _attach_lora(pipe, variant)
    forget_content_hash(getattr(pipe, name))  # fusing writes weights through .data
    return pipe


def _read_denoiser(source: str, model, name: str) -> dict[str, torch.Tensor]:
    """The state dict at `source` (a model folder, a folder holding `name`/, or a safetensors file), checked against
    `model`'s tensor names and shapes (and its config, for a folder) before anything is loaded."""
    from safetensors.torch import load_file

    path = Path(source)
    config = None
    if path.is_dir():
        folder = path / name if (path / name / "config.json").is_file() else path
        weights = [folder / w for w in WEIGHTS_NAMES if (folder / w).is_file()]
        sharded = sorted(folder.glob("diffusion_pytorch_model-*.safetensors"))
        if not weights and not sharded:
            raise FileNotFoundError(f"denoiser {source}: no {WEIGHTS_NAMES[0]} in {folder}; give a diffusers model "
                                    f"folder (config.json + weights), the folder holding {name}/, or a safetensors "
                                    "file of the weights")
        if (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text())
        state = {}
        for file in (weights[:1] or sharded):
            state.update(load_file(str(file)))
    elif path.is_file():
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for a foreign or damaged file
            raise ValueError(f"denoiser {source} is not a readable safetensors file ({exc}); give a safetensors file "
                             "of the denoiser's weights or a diffusers model folder") from exc
    else:
        raise FileNotFoundError(f"denoiser {source} does not exist; give a diffusers model folder (e.g. a "
                                f"checkpoint's {name}/), the folder holding it, or a safetensors file of its weights")
    if config is not None:
        _check_config(source, config, dict(model.config))
    _check_keys(source, state, model.state_dict())
    return state


def _check_config(source: str, given: dict, own: dict) -> None:
    """Architecture fields (those both configs have, private ones aside) must agree."""
    differ = {k: (given[k], own[k]) for k in sorted(set(given) & set(own))
              if not k.startswith("_") and _plain(given[k]) != _plain(own[k])}
    if differ:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in list(differ.items())[:6])
        raise ValueError(f"denoiser {source} has another architecture than this pipeline's ({shown}); give a "
                         "checkpoint fine-tuned from this base model")


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_keys(source: str, state: dict, own: dict) -> None:
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unknown tensors (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of other shapes (e.g. {k}: {list(state[k].shape)} there, "
                         f"{list(own[k].shape)} here)")
        raise ValueError(f"denoiser {source} does not fit this pipeline's denoiser: {'; '.join(parts)}. It must be "
                         "in the diffusers layout and fine-tuned from this base model (original-format single files "
                         "need converting with diffusers first)")


def _attach_lora(pipe, variant: BackboneVariant) -> None:
    path = Path(variant.lora)
    if not path.exists():
        raise FileNotFoundError(f"LoRA {variant.lora} does not exist; give a folder holding "
                                "pytorch_lora_weights.safetensors or a LoRA safetensors file")
    if not hasattr(pipe, "load_lora_weights"):
        raise TypeError(f"{type(pipe).__name__} cannot load LoRA weights")
    kwargs = {"weight_name": path.name} if path.is_file() else {}
    folder = path.parent if path.is_file() else path
    pipe.load_lora_weights(str(folder), adapter_name=LORA_ADAPTER, **kwargs)
    if variant.fuse_lora:
        pipe.fuse_lora(lora_scale=variant.lora_scale, adapter_names=[LORA_ADAPTER])
        pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go
        log.info("LoRA %s fused at scale %g", variant.lora, variant.lora_scale)
    else:
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[variant.lora_scale])
        log.info("LoRA %s attached at scale %g (not fused)", variant.lora, variant.lora_scale)


def content_hash(module: torch.nn.Module) -> str:
    """A 16-hex-digit hash of the module's weights (see the module docstring), cached on the module."""
    params = list(module.state_dict(keep_vars=True).items())
    versions = tuple((k, t.data_ptr(), int(getattr(t, "_version", 0))) for k, t in params)
    cached = getattr(module, _HASH_ATTR, None)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    with torch.no_grad():
        for key, tensor in sorted(params, key=lambda item: item[0]):
            flat = tensor.detach().reshape(-1)
            if flat.numel() > HASH_SAMPLES:
                # float32 linspace rounds numel - 1 up to numel for some tensors over 2**24 values (SD1.5's
                # 1280x2560x3x3 convs): clamp, which leaves every index that was in range, so every hash, as it was.
                index = torch.linspace(0, flat.numel() - 1, HASH_SAMPLES, device=flat.device).long()
                flat = flat[index.clamp_(max=flat.numel() - 1)]
            values = flat.to(torch.bfloat16) if flat.is_floating_point() else flat
            digest.update(f"{key}:{list(tensor.shape)}".encode())
            digest.update(values.cpu().view(torch.int16).numpy().tobytes() if flat.is_floating_point()
                          else values.cpu().numpy().tobytes())
    value = digest.hexdigest()[:16]
    setattr(module, _HASH_ATTR, (versions, value))
    return value


def forget_content_hash(module: torch.nn.Module) -> None:
    """Drop the cached hash: the next content_hash recomputes it."""
    if hasattr(module, _HASH_ATTR):
        delattr(module, _HASH_ATTR)


def denoiser_hash(pipe) -> str:
    return content_hash(getattr(pipe, denoiser_name(pipe)))


def trained_on(pipe, model_path, variant: BackboneVariant | None) -> dict:
    """What soft tokens record about their backbone: its folder's name, the variant's sources, the denoiser's hash."""
    variant = variant or BackboneVariant()
    record = {"model": Path(str(model_path)).name, "denoiser_hash": denoiser_hash(pipe)}
    if variant.denoiser:
        record["denoiser"] = str(variant.denoiser)
    if variant.lora:
        record.update(lora=str(variant.lora), lora_scale=variant.lora_scale, lora_fused=variant.fuse_lora)
    return record


def describe_backbone(record: dict) -> str:
    """'sd15-tiny + denoiser runs/dpo/unet + LoRA x (scale 0.8) [hash 0123...]' for messages."""
    text = str(record.get("model", "?"))
    if record.get("denoiser"):
        text += f" + denoiser {record['denoiser']}"
    if record.get("lora"):
        text += f" + LoRA {record['lora']} (scale {record.get('lora_scale', 1.0)})"
    return f"{text} [denoiser hash {record.get('denoiser_hash', '?')}]"


def add_variant_options(parser) -> None:
    """--denoiser, --lora, --lora-scale, --unfused-lora: the sampling commands' way to name a variant."""
    parser.add_argument("--denoiser", help="another denoiser for --model: a diffusers model folder (a checkpoint's "
                                           "unet/ or transformer/, or the folder holding it) or a safetensors file of "
                                           "its weights, e.g. a Diffusion-DPO UNet or an `agsm train` dpo export")
    parser.add_argument("--lora", help="a LoRA for the denoiser (peft / diffusers format: a folder holding "
                                       "pytorch_lora_weights.safetensors, or the file)")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="the LoRA's scale (default 1: as trained)")
    parser.add_argument("--unfused-lora", action="store_true",
                        help="keep the LoRA as adapter layers instead of folding it into the weights")


def variant_from_args(args) -> BackboneVariant | None:
    """The variant the options of add_variant_options name; None for the stock pipeline."""
    variant = BackboneVariant(args.denoiser or None, args.lora or None, args.lora_scale, not args.unfused_lora)
    return None if variant.is_stock else variant
