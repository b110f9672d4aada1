"""The options of each architecture's pretraining, their checks and which of them change the weights.

Every field lands in train_info.json ("config") and in WORK/config.json; `settings` picks the weight-changing
ones that a checkpoint records and a resume must match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import tiny_models as tm
from .checkpoint import normalise

SD15_VAE = Path(__file__).parents[1] / "models" / "sd15-tiny" / "vae"  # the frozen VAE sd3 reuses


def _at_least_one(cfg, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")


def _dropout(value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"caption_dropout must be in [0, 1), got {value}")


@dataclass
class SD15Config:
    """The tiny SD1.5 model: VAE stage, latent cache, UNet + CLIP text encoder stage."""

    out_dir: str
    work_dir: str
    steps_vae: int = 3000
    steps_unet: int = 10000
    seed: int = 0
    n_images: int = 20000
    batch_vae: int = 16
    batch_unet: int = 64
    lr_vae: float = 1e-3
    lr_unet: float = 8e-4
    warmup_unet: int = 200
    kl_weight: float = 1e-6  # per-sample summed KL, as Stable Diffusion's VAE
    foreground_weight: float = 4.0  # objects cover ~10% of a canvas; without this L1 fits the white first
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    unet_channels: tuple[int, ...] = (32, 64)
    text_hidden: int = 64
    text_layers: int = 2
    threads: int = 1
    init_from: str | None = None  # a trained pipeline folder to continue from (its VAE is kept)
    position_repeats: int = 1  # position scenes appear this many times per cycle of categories
    restate_share: float = 0.0  # chance per step that a scene is shown with its restatement (restate.py)
    log_every: int = 100

    def __post_init__(self) -> None:
        _at_least_one(self, ("steps_vae", "steps_unet", "n_images", "batch_vae", "batch_unet", "checkpoint_every",
                             "log_every", "threads", "position_repeats"))
        _dropout(self.caption_dropout)
        if not 0 <= self.restate_share <= 1:
            raise ValueError(f"restate_share must be in [0, 1], got {self.restate_share}")
        if self.init_from is not None and not (Path(self.init_from) / "model_index.json").exists():
            raise ValueError(f"init_from {self.init_from!r} is not a pipeline folder (no model_index.json); "
                             "pass a folder written by this trainer, e.g. src/agsm/shapes/models/sd15-tiny")
        self.vae_channels, self.unet_channels = tuple(self.vae_channels), tuple(self.unet_channels)

    def vae_settings(self) -> dict:
        """What the VAE stage's weights depend on (the UNet options do not restart it)."""
        names = ("seed", "n_images", "position_repeats", "steps_vae", "batch_vae", "lr_vae", "kl_weight",
                 "foreground_weight", "vae_channels")
        return {k: v for k, v in settings(self).items() if k in names}


@dataclass
class FrozenVAEConfig:
    """What the architectures trained on the frozen sd15-tiny VAE's latents (sd3, sdxl) share, with the sd15
    recipe's defaults (sdxl keeps them; sd3 sets its own). A subclass adds its options and must declare
    ema_decay, checkpoint_every, log_every, vae, device and threads, which __post_init__ checks: they stay in the
    subclass because the field order is the order of config.json and train_info.json ("config"), and each
    architecture records its own options between these and those."""

    out_dir: str
    work_dir: str
    steps: int = 10000
    seed: int = 0
    n_images: int = 20000
    batch: int = 64
    lr: float = 8e-4
    warmup: int = 200
    weight_decay: float = 0.01
    caption_dropout: float = 0.1

    # The architecture's further options that must be >= 1 (checked after the shared ones, in this order).
    COUNTS = ()

    def __post_init__(self) -> None:
        _at_least_one(self, ("steps", "n_images", "batch", "checkpoint_every", "log_every", "threads") + self.COUNTS)
        _dropout(self.caption_dropout)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device} but torch sees no CUDA device; use --device cpu")


@dataclass
class SD3Config(FrozenVAEConfig):
    """The tiny SD3 model: MM-DiT + two CLIP encoders by flow matching on the frozen sd15-tiny VAE's latents."""

    steps: int = 30000
    n_images: int = 100_000
    batch: int = 256
    lr: float = 5e-4
    warmup: int = 500
    logit_mean: float = 0.0  # SD3's logit-normal timestep density, m = 0, s = 1
    logit_std: float = 1.0
    ema_decay: float = 0.9995
    checkpoint_every: int = 1000
    log_every: int = 250
    width: int = tm.SD3_WIDTH
    layers: int = tm.SD3_LAYERS
    heads: int = tm.SD3_HEADS
    dual_attention_layers: tuple[int, ...] = field(default=tm.SD3_DUAL_ATTENTION_LAYERS)
    text_hidden: int = tm.SD3_TEXT_HIDDEN
    text_layers: int = tm.SD3_TEXT_LAYERS
    vae: str = str(SD15_VAE)
    device: str = "cpu"
    bf16: bool = False
    compile: bool = False
    threads: int = 1

    COUNTS = ("layers", "heads")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.dual_attention_layers = tuple(self.dual_attention_layers)


@dataclass
class SDXLConfig(FrozenVAEConfig):
    """The tiny SDXL model: UNet with added conditioning + two CLIP encoders, epsilon loss on the frozen sd15-tiny
    VAE's latents; the sd15 recipe's data, steps, batch, learning rate and EMA (the study kept that recipe)."""

    ema_decay: float = 0.999
    checkpoint_every: int = 200
    log_every: int = 100
    unet_channels: tuple[int, ...] = (32, 64)
    text_hidden: tuple[int, ...] = field(default=tm.SDXL_TEXT_HIDDEN)
    text_layers: int = tm.SDXL_TEXT_LAYERS
    vae: str = str(SD15_VAE)
    device: str = "cpu"
    threads: int = 1

    COUNTS = ("text_layers",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.unet_channels, self.text_hidden = tuple(self.unet_channels), tuple(self.text_hidden)
        if len(self.text_hidden) != 2:
            raise ValueError(f"text_hidden {self.text_hidden} must name the widths of the two text encoders")


# Options that leave the weights alone (where and how often to write, how fast to run); all others must match
# on resume. sd3's device and compile change rounding at most; bf16 changes the arithmetic, so it must match.
NOT_TRAINING = ("out_dir", "work_dir", "checkpoint_every", "log_every", "threads", "device", "compile")


def settings(cfg) -> dict:
    """The options of `cfg` that change the trained weights, JSON-normalised (tuples as lists)."""
    return normalise({k: v for k, v in asdict(cfg).items() if k not in NOT_TRAINING})
