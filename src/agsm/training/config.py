"""Run configuration: one dataclass per concern, read from YAML and overridden by `--section.key value`.

Each dataclass checks itself on creation and names the option, the value and what is allowed. The `method` section is
the options of the method it names (each method's own dataclass, objectives/<method>.py). Reading files, overrides
and old option names live in training/config_parsing.py (the names in option_names.py), the help table in
config_help.py. The `train` section (how the run goes) is in training/run_options.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..backbones.model_source import ModelSource
from ..objectives import AgsmOptions, MethodOptions
from .config_help import option_help
from .config_parsing import (SHIPPED_CONFIGS, _apply_renames, merge_overrides, method_options, parse_overrides,
                             read_config_file, resolve_config, shipped_configs, unknown_sections_hint)
from .option_names import RENAMED_OPTIONS, unknown_options_hint
from .config_types import coerce_section
from .run_options import TrainConfig

__all__ = ["Config", "ModelConfig", "DataConfig", "TokenConfig", "TuneConfig", "TrainConfig", "from_dict",
           "load_config", "option_help", "parse_overrides", "shipped_configs", "resolve_config", "SHIPPED_CONFIGS",
           "RENAMED_OPTIONS"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class ModelConfig:
    path: str = field(default="", metadata={
        "help": "a local diffusers pipeline folder (SD1.5, SDXL or SD3 layout), else a Hugging Face Hub id "
                "(owner/name), fetched into the Hub cache (HF_HUB_OFFLINE: from the cache only)"})
    # diffusers' names: which version of a Hub model, and which of its weight files (docs/loading.md)
    revision: str = field(default="", metadata={
        "help": "model.path as a Hub id: the branch, tag or commit to load ('': main); the token file records the "
                "snapshot's commit"})
    variant: str = field(default="", metadata={
        "help": "diffusers' weights variant, e.g. fp16 (loads the *.fp16.safetensors files); '': the default weights. "
                "Another denoiser or a LoRA is model.denoiser / model.lora"})
    resolution: int | None = field(default=None, metadata={
        "help": "training image size; null: the denoiser's sample_size x the VAE factor"})
    timestep_sampling: str = field(default="uniform", metadata={
        "help": "flow backbones (SD3) only: how training timesteps are drawn, uniform (public code) | logit_normal"})
    timestep_shift: float = field(default=1.0, metadata={
        "help": "flow backbones only: SD3's timestep shift s' = shift s / (1 + (shift - 1) s); 1 = none"})
    logit_mean: float = field(default=0.0, metadata={"help": "mean of the logit-normal timestep draw (logit_normal)"})
    logit_std: float = field(default=1.0, metadata={
        "help": "standard deviation of the logit-normal timestep draw (logit_normal); > 0"})
    # Preference-tuned backbones (docs/preference.md): another denoiser and/or a LoRA on model.path's pipeline.
    denoiser: str = field(default="", metadata={
        "help": "another denoiser for model.path's pipeline: a diffusers model folder (a checkpoint's unet/ or "
                "transformer/, or the folder holding it) or a safetensors file of its weights, e.g. a Diffusion-DPO "
                "UNet or `agsm train --method.name dpo`'s export; '': the folder's own"})
    lora: str = field(default="", metadata={
        "help": "a LoRA (peft / diffusers format, what pipe.load_lora_weights reads: a folder or a safetensors "
                "file) applied to the denoiser before training; '': none"})
    lora_scale: float = field(default=1.0, metadata={"help": "the LoRA's scale (1 = as trained)"})
    fuse_lora: bool = field(default=True, metadata={
        "help": "fold the LoRA into the denoiser's weights (true) or keep it attached as adapter layers (false)"})

    def __post_init__(self):
        if isinstance(self.path, ModelSource):  # its revision and variant become these options: plain YAML values
            self.revision = self.revision or self.path.revision or ""
            self.variant = self.variant or self.path.weights_variant or ""
            self.path = str(self.path)
        _check(self.resolution is None or self.resolution >= 8, f"model.resolution {self.resolution} must be >= 8")
        _check(self.lora_scale == 1.0 or bool(self.lora),
               f"model.lora_scale {self.lora_scale} needs model.lora (a LoRA to scale)")
        _check(self.timestep_sampling in ("uniform", "logit_normal"),
               f"model.timestep_sampling {self.timestep_sampling!r} is not one of 'uniform', 'logit_normal'")
        _check(self.timestep_shift > 0, f"model.timestep_shift {self.timestep_shift} must be > 0 (1 = no shift)")
        _check(self.logit_std > 0, f"model.logit_std {self.logit_std} must be > 0")

    def flow_options(self) -> dict:
        return {"timestep_sampling": self.timestep_sampling, "timestep_shift": self.timestep_shift,
                "logit_mean": self.logit_mean, "logit_std": self.logit_std}

    def source(self):
        """model.path with its revision and weights variant, as the loaders take it (backbones.model_source)."""
        return ModelSource(self.path, self.revision, self.variant)

    def backbone_variant(self):
        """The backbone variant (another denoiser, a LoRA) these options name; stock when both are empty."""
        from ..backbones.variants import BackboneVariant

        return BackboneVariant(self.denoiser or None, self.lora or None, self.lora_scale, self.fuse_lora)


@dataclass
class DataConfig:
    format: str = field(default="imagefolder", metadata={
        "help": "imagefolder: path/metadata.jsonl; coco: path = the images folder, plus data.captions; hf: a Hugging "
                "Face dataset; pairs: preference pairs (method dpo, inpo, spo; docs/preference.md)"})
    path: str = field(default="", metadata={"help": "the training images: an image folder or COCO's images folder"})
    captions: str = field(default="", metadata={"help": "the COCO captions json (data.format coco)"})
    cache_dir: str = field(default="", metadata={
        "help": "a cache of encoded latents and captions shared by runs: each encoding is stored under a key that "
                "hashes the encoders (config and weights), resolution, dtype, cache_text, min_size and every "
                "image's path, size, mtime and captions, so runs on the same data and backbone reuse it and "
                "anything else gets its own entry. '': <output_dir>/cache, private to the run (kept by --overwrite, "
                "since a changed input never reuses an entry)"})
    cache_text: bool = field(default=True, metadata={
        "help": "false: encode captions every step (for caption sets too big to cache)"})
    min_size: int | None = field(default=None, metadata={
        "help": "images with a shorter side below this are skipped; null: resolution // 2"})
    # Preprocessing before the VAE (data/images.py); both are part of the cache key when not at their default.
    center_crop: bool = field(default=True, metadata={
        "help": "true: resize the shorter side to the resolution and cut the centre square (what is outside it is "
                "never seen); false: resize the whole image to a square, distorting its aspect ratio"})
    random_flip: bool = field(default=False, metadata={
        "help": "mirror each image left-right with chance 1/2 at every step (the draw is the step's, so a resume "
                "stays exact); the cache then holds the latents of both orientations, encoding each image twice"})
    # Hugging Face datasets (data.format hf; docs/data.md): data.path is a save_to_disk folder, a folder, file or
    # glob load_dataset reads, or a hub dataset id.
    hf_builder: str = field(default="", metadata={
        "help": "data.format hf: the load_dataset builder for data.path (parquet, csv, json, imagefolder ...); "
                "'': a save_to_disk folder, or what load_dataset infers from the folder or file"})
    split: str = field(default="train", metadata={"help": "data.format hf: the dataset split to train on"})
    image_column: str = field(default="image", metadata={
        "help": "data.format hf: the column of images (datasets.Image, image bytes, or image file paths)"})
    caption_column: str = field(default="text", metadata={
        "help": "data.format hf: the column of captions, a string or a list of strings per row"})
    streaming: bool = field(default=False, metadata={
        "help": "data.format hf: read the dataset as a stream (load_dataset streaming=True), encoding it in one "
                "pass without holding its images in memory"})
    max_images: int | None = field(default=None, metadata={
        "help": "use only the first max_images images (rows) of the data; null: all"})
    # Preference pairs (data.format pairs, docs/preference.md): Pick-a-Pic's columns by default; a winner/loser layout
    # names its preferred image column as image_0 and leaves label_column empty.
    image_0_column: str = field(default="jpg_0", metadata={
        "help": "data.format pairs: the column of the first image of a pair (Pick-a-Pic jpg_0; the preferred image "
                "when label_column is '')"})
    image_1_column: str = field(default="jpg_1", metadata={
        "help": "data.format pairs: the column of the second image (Pick-a-Pic jpg_1; the dispreferred one when "
                "label_column is '')"})
    label_column: str = field(default="label_0", metadata={
        "help": "data.format pairs: which image is preferred, Pick-a-Pic's label_0 (1: image 0, 0: image 1, 0.5: a "
                "tie, dropped); '': image_0 always is (image_w / image_l layouts)"})

    def __post_init__(self):
        _check(self.format in ("imagefolder", "coco", "hf", "pairs"),
               f"data.format {self.format!r} is not one of 'imagefolder', 'coco', 'hf', 'pairs'")
        _check(self.max_images is None or self.max_images >= 1,
               f"data.max_images {self.max_images} must be >= 1 (or null for all images)")
        _check(self.min_size is None or self.min_size >= 0,
               f"data.min_size {self.min_size} must be >= 0 (0 keeps every image; null: resolution // 2)")
        _check(self.format in ("hf", "pairs") or not (self.streaming or self.hf_builder),
               f"data.streaming and data.hf_builder apply to Hugging Face datasets; set data.format hf "
               f"(data.format is {self.format!r})")
        _check(bool(self.split and self.image_column and self.caption_column),
               "data.split, data.image_column and data.caption_column must not be empty")
        _check(not (self.format == "pairs" and (self.random_flip or not self.center_crop)),
               "data.random_flip and data.center_crop apply to images with captions; preference pairs (data.format "
               "pairs) are always centre-cropped and never flipped: leave both at their defaults")


@dataclass
class TokenConfig:
    num_tokens: int = field(default=4, metadata={"help": "soft tokens per set (UNet) or per block (MM-DiT)"})
    stages: list[str] = field(default_factory=lambda: ["down", "mid"], metadata={
        "help": "UNet stages whose cross-attention gets the tokens: a subset of down, mid, up"})
    blocks: int = field(default=5, metadata={
        "help": "MM-DiT (SD3): the first `blocks` transformer blocks get their own tokens"})
    init: str = field(default="normal", metadata={
        "help": "normal: normal(0, init_std); empty_prompt: the empty prompt's BOS embedding plus that normal offset"})
    init_std: float = field(default=0.02, metadata={"help": "standard deviation of the tokens' random start"})
    num_buckets: int = field(default=100, metadata={
        "help": "rows of the time table: the timesteps are split into this many buckets, each with its own offset"})
    time_table: str = field(default="shared", metadata={
        "help": "MM-DiT: one time table shared by all blocks' tokens (shared) or one per block (per_block, the "
                "public SD3 code)"})
    time_init_std: float = field(default=0.0, metadata={
        "help": "the time table's start: zeros (0), or normal(0, time_init_std) (public code 0.02)"})

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
        _check(self.init_std >= 0, f"tokens.init_std {self.init_std} must be >= 0")
        _check(self.num_buckets >= 1, f"tokens.num_buckets {self.num_buckets} must be >= 1")


@dataclass
class TuneConfig:
    params: str = field(default="lora", metadata={
        "help": "preference methods: what is trained, lora (a peft LoRA on the denoiser's attention projections) | "
                "full (every weight of the denoiser); the reference is the frozen start"})
    lora_rank: int = field(default=4, metadata={"help": "tune.params lora: the LoRA's rank (SPO's public setting 4)"})
    lora_alpha: float | None = field(default=None, metadata={
        "help": "tune.params lora: the LoRA's alpha (its update is scaled by alpha / rank); null: the rank"})
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"], metadata={
        "help": "tune.params lora: the module names the LoRA goes on (peft target_modules)"})
    export_pipeline: bool = field(default=False, metadata={
        "help": "also write <output_dir>/pipeline: the whole pipeline with the tuned denoiser (what `agsm eval "
                "shapes --model` or `python -m agsm.study.arms --model` take)"})

    def __post_init__(self):
        _check(self.params in ("lora", "full"), f"tune.params {self.params!r} is not one of 'lora', 'full'")
        _check(self.lora_rank >= 1, f"tune.lora_rank {self.lora_rank} must be >= 1")
        _check(self.lora_alpha is None or self.lora_alpha > 0, f"tune.lora_alpha {self.lora_alpha} must be > 0")
        _check(bool(self.lora_targets), "tune.lora_targets must name at least one module")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the frozen diffusers backbone"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "images, captions and their cache"})
    tokens: TokenConfig = field(default_factory=TokenConfig, metadata={"help": "the soft tokens and where they go"})
    method: MethodOptions = field(default_factory=AgsmOptions, metadata={
        "help": "the objective (method.name) and its settings: each method's own options, listed below by method"})
    tune: TuneConfig = field(default_factory=TuneConfig, metadata={
        "help": "what the preference methods (dpo, inpo, spo) train: a LoRA or the whole denoiser"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={
        "help": "optimiser, schedule, checkpoints, logging and the exported token file"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from ..utils.atomic_files import write_text

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _section_types() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "method"}


def from_dict(raw: dict) -> Config:
    """A Config from nested dicts (YAML, overrides); every value is checked against its field's type first. The
    method section is read as the options of the method it names (agsm by default)."""
    _check(isinstance(raw, dict), f"a config must be a mapping of sections (model, data, ...), got "
           f"{type(raw).__name__} {raw!r}")
    sections = _section_types()
    unknown = sorted(set(raw) - set(sections) - {"method"})
    _check(not unknown, f"{unknown_sections_hint(unknown, [*sections, 'method'], raw)}unknown config sections "
           f"{unknown}; valid: {sorted([*sections, 'method'])}")
    raw = _apply_renames(raw)
    built = {}
    for name, cls in sections.items():
        values = coerce_section(name, cls, raw.get(name))
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - valid)
        _check(not bad, f"{unknown_options_hint(name, bad, valid)}unknown options {[f'{name}.{b}' for b in bad]}; "
               f"valid {name} options: {sorted(valid)}")
        built[name] = cls(**values)
    built["method"] = method_options(raw.get("method"))
    return Config(**built)


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """The config of a YAML file (or a shipped config's name, e.g. 'sd15'), then the overrides on top."""
    from ..data.formats import infer_data_format  # data.format left out: it follows data.path / data.captions

    raw = read_config_file(path) if path is not None else {}
    return from_dict(infer_data_format(merge_overrides(raw, overrides)))
