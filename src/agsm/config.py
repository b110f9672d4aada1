"""Run configuration: one dataclass per concern, read from YAML and overridden by `--section.key value`.

Each dataclass checks itself on creation and names the option, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config_types import coerce_section


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class ModelConfig:
    path: str = ""              # a local diffusers pipeline folder (SD1.5, SDXL or SD3 layout)
    resolution: int | None = None  # training image size; default: the denoiser's sample_size x VAE factor
    # Flow backbones (SD3) only: how training timesteps are drawn (METHOD.md; public code: uniform).
    timestep_sampling: str = "uniform"  # uniform | logit_normal
    timestep_shift: float = 1.0         # SD3's shift s' = shift s / (1 + (shift - 1) s); 1 = none
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self):
        _check(self.resolution is None or self.resolution >= 8, f"model.resolution {self.resolution} must be >= 8")
        _check(self.timestep_sampling in ("uniform", "logit_normal"),
               f"model.timestep_sampling {self.timestep_sampling!r} is not one of 'uniform', 'logit_normal'")
        _check(self.timestep_shift > 0 and self.logit_std > 0,
               f"model.timestep_shift {self.timestep_shift} and model.logit_std {self.logit_std} must be > 0")

    def flow_options(self) -> dict:
        return {"timestep_sampling": self.timestep_sampling, "timestep_shift": self.timestep_shift,
                "logit_mean": self.logit_mean, "logit_std": self.logit_std}


@dataclass
class DataConfig:
    format: str = "imagefolder"  # imagefolder: path/metadata.jsonl; coco: path = images dir + captions json
    path: str = ""
    captions: str = ""           # COCO captions json (format: coco)
    cache_dir: str = ""          # default: <output_dir>/../cache
    cache_text: bool = True      # False: encode captions every step (for caption sets too big to cache)
    min_size: int | None = None  # images with a shorter side below this are skipped (default resolution // 2)

    def __post_init__(self):
        _check(self.format in ("imagefolder", "coco"),
               f"data.format {self.format!r} is not one of 'imagefolder', 'coco'")


@dataclass
class TokenConfig:
    num_tokens: int = 4          # per set (UNet) or per block (MM-DiT)
    stages: list[str] = field(default_factory=lambda: ["down", "mid"])  # UNet stages that get tokens
    blocks: int = 5              # MM-DiT: the first `blocks` transformer blocks get their own tokens
    init: str = "normal"         # normal(0, init_std), or empty_prompt: the empty prompt's BOS + normal offset
    init_std: float = 0.02
    num_buckets: int = 100
    # MM-DiT: one time table shared by all blocks' tokens, or one per block (public SD3 code), and its start:
    # zeros, or normal(0, time_init_std) (public code 0.02).
    time_table: str = "shared"
    time_init_std: float = 0.0

    def __post_init__(self):
        _check(self.num_tokens >= 1, f"tokens.num_tokens {self.num_tokens} must be >= 1")
        _check(self.init in ("normal", "empty_prompt"),
               f"tokens.init {self.init!r} is not one of 'normal', 'empty_prompt'")
        _check(bool(self.stages) and set(self.stages) <= {"down", "mid", "up"},
               f"tokens.stages {self.stages} must be a non-empty subset of ['down', 'mid', 'up']")
        _check(self.blocks >= 1, f"tokens.blocks {self.blocks} must be >= 1")
        _check(self.time_table in ("shared", "per_block"),
               f"tokens.time_table {self.time_table!r} is not one of 'shared', 'per_block'")
        _check(self.time_init_std >= 0, f"tokens.time_init_std {self.time_init_std} must be >= 0")


@dataclass
class MethodConfig:
    name: str = "agsm"           # agsm | softrepa | dsm
    # AGSM (METHOD.md "AGSM loss")
    gamma_pos: float = 1.0
    gamma_neg: float = 1.0
    temperature: float = 0.1     # Plackett-Luce softmax temperature (public code value)
    # Where the implicit reward's error is measured (beyond the paper): in the model's target space (paper, code),
    # or in v-space, where an eps model's reward gaps no longer vanish at large t (docs/study.md, item 1).
    reward_space: str = "target"
    shared_tokens: bool = False  # ablation: psi+ and psi- are one tensor
    bradley_terry: bool = False  # ablation: one negative per image (K = 2)
    ema_decay: float = 0.9999
    # EMA tokens at step 0: a copy of the online tokens, or their own normal(0, init_std) draw (public code),
    # which keeps the targets' reference near the plain model for the first thousands of steps.
    ema_init: str = "copy"
    # Hard negatives (beyond the paper): this fraction of each image's K - 1 negatives is replaced by its own
    # caption with one attribute changed (data/perturb.py), of the kinds listed.
    hard_negatives: float = 0.0
    hard_negative_kinds: list[str] = field(default_factory=lambda: ["color", "shape", "count", "relation"])
    noise_sharing: str = "image"  # image (paper) | batch (public code)
    # Where the EMA prediction is evaluated (flow backbones): previous_step = one Euler step earlier, x_{t+dt}
    # (the paper's derivation); x_t (public code). auto: previous_step on flow backbones, x_t on UNets.
    ema_at: str = "auto"
    ema_step: float = 1000 / 28  # dt in timesteps: one step of the 28-step SD3 sampler
    # SoftREPA
    softrepa_temperature: float = 0.07
    softrepa_scale: float = 4.0
    diagonal_weight: float = 0.0  # public code: 10 on SD1.5/SDXL

    def __post_init__(self):
        _check(self.name in ("agsm", "softrepa", "dsm"),
               f"method.name {self.name!r} is not one of 'agsm', 'softrepa', 'dsm'")
        _check(self.noise_sharing in ("image", "batch"),
               f"method.noise_sharing {self.noise_sharing!r} is not one of 'image', 'batch'")
        _check(self.temperature > 0 and self.softrepa_temperature > 0, "temperatures must be > 0")
        _check(self.ema_at in ("auto", "x_t", "previous_step"),
               f"method.ema_at {self.ema_at!r} is not one of 'auto', 'x_t', 'previous_step'")
        _check(self.ema_step > 0, f"method.ema_step {self.ema_step} must be > 0")
        _check(self.reward_space in ("target", "velocity"),
               f"method.reward_space {self.reward_space!r} is not one of 'target', 'velocity'")
        _check(self.ema_init in ("copy", "independent"),
               f"method.ema_init {self.ema_init!r} is not one of 'copy', 'independent'")
        _check(0.0 <= self.hard_negatives <= 1.0, f"method.hard_negatives {self.hard_negatives} must be in [0, 1]")
        bad = sorted(set(self.hard_negative_kinds) - {"color", "shape", "count", "relation"})
        _check(not bad and bool(self.hard_negative_kinds), f"method.hard_negative_kinds {self.hard_negative_kinds} "
               "must be a non-empty subset of ['color', 'shape', 'count', 'relation']")
        _check(0.0 <= self.ema_decay < 1.0, f"method.ema_decay {self.ema_decay} must be in [0, 1)")
        _check(self.gamma_pos >= 0 and self.gamma_neg >= 0, "method.gamma_pos and gamma_neg must be >= 0")

    @property
    def num_token_sets(self) -> int:
        """AGSM trains psi+ and psi- unless the tokens are shared or negatives are dropped (gamma_neg = 0)."""
        dual = self.name == "agsm" and not self.shared_tokens and self.gamma_neg > 0
        return 2 if dual else 1


@dataclass
class TrainConfig:
    output_dir: str = "runs/agsm"
    steps: int = 1000
    images_per_step: int = 4     # per process; each image meets every caption of the batch (4 x 4 = 16 pairs)
    gather_captions: bool = False  # with several processes, contrast each image with the global batch's captions
    lr: float = 1e-3
    weight_decay: float = 1e-4
    restart_every: int = 1000    # cosine schedule with warm restarts: iterations per cycle
    min_lr: float = 0.0
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    # Non-finite steps (NaN/inf loss or gradient) skipped before training stops; each is counted and logged.
    max_bad_steps: int = 0

    def __post_init__(self):
        _check(self.steps >= 1, f"train.steps {self.steps} must be >= 1")
        _check(self.images_per_step >= 2, f"train.images_per_step {self.images_per_step} must be >= 2 "
               "(contrast needs another caption in the batch)")
        _check(self.mixed_precision in ("no", "bf16", "fp16"),
               f"train.mixed_precision {self.mixed_precision!r} is not one of 'no', 'bf16', 'fp16'")
        _check(self.checkpoint_every >= 1 and self.restart_every >= 1 and self.keep_checkpoints >= 1,
               "train.checkpoint_every, restart_every and keep_checkpoints must be >= 1")
        _check(self.max_bad_steps >= 0, f"train.max_bad_steps {self.max_bad_steps} must be >= 0")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from .atomic_files import write_text

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _section_types() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}


def from_dict(raw: dict) -> Config:
    """A Config from nested dicts (YAML, overrides); every value is checked against its field's type first."""
    _check(isinstance(raw, dict), f"a config must be a mapping of sections (model, data, ...), got "
           f"{type(raw).__name__} {raw!r}")
    sections = _section_types()
    unknown = sorted(set(raw) - set(sections))
    _check(not unknown, f"unknown config sections {unknown}; valid: {sorted(sections)}")
    built = {}
    for name, cls in sections.items():
        values = coerce_section(name, cls, raw.get(name))
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - valid)
        _check(not bad, f"unknown options {[f'{name}.{b}' for b in bad]}; valid {name} options: {sorted(valid)}")
        built[name] = cls(**values)
    return Config(**built)


def parse_overrides(args: list[str]) -> dict:
    """['--train.steps', '10', '--method.gamma_neg=0.1'] -> {'train': {'steps': 10}, 'method': {...}}."""
    out: dict = {}
    items = list(args)
    while items:
        key = items.pop(0)
        _check(key.startswith("--"), f"expected an option like --train.steps, got {key!r}")
        key, _, value = key[2:].partition("=")
        if not _:
            _check(bool(items), f"option --{key} needs a value")
            value = items.pop(0)
        section, _, option = key.partition(".")
        _check(bool(option), f"option --{key} must be written --section.option, e.g. --train.steps")
        out.setdefault(section, {})[option.replace("-", "_")] = _yaml_value(value)
    return out


def _yaml_value(text: str):
    """A command-line value as YAML reads it ('7' -> 7, 'true' -> True, '[down]' -> list); else the text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    raw = {}
    if path is not None:
        path = Path(path)
        _check(path.is_file(), f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
        _check(isinstance(raw, dict), f"config file {path} must hold a mapping of sections (model:, data:, "
               f"train: ...), not a {type(raw).__name__}")
    extra = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    for section, values in extra.items():
        current = raw.setdefault(section, {})
        _check(isinstance(current, dict), f"config section {section!r} must be a mapping of options, got "
               f"{type(current).__name__} {current!r}")
        current.update(values)
    return from_dict(raw)
