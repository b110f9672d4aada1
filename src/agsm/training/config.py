"""Run configuration: one dataclass per concern, read from YAML and overridden by `--section.key value`.

Each dataclass checks itself on creation and names the option, the value and what is allowed.
Over 300 lines because every option carries its help text (what `agsm train --help` prints); the next split is
the help and override parsing (option_help, parse_overrides, load_config) into their own module.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import logging
from importlib.resources.abc import Traversable
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config_types import coerce_section

log = logging.getLogger("agsm.config")
# The configs shipped in the wheel (package data), reachable by name: `agsm train --config sd15`.
SHIPPED_CONFIGS = importlib.resources.files("agsm") / "configs"


# Soft-token objectives train tokens on a frozen backbone; preference objectives train the backbone (section `tune`).
TOKEN_METHODS = ("agsm", "softrepa", "dsm")
PREFERENCE_METHODS = ("dpo", "inpo", "spo")
METHOD_NAMES = TOKEN_METHODS + PREFERENCE_METHODS


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class ModelConfig:
    path: str = field(default="", metadata={"help": "a local diffusers pipeline folder (SD1.5, SDXL or SD3 layout)"})
    resolution: int | None = field(default=None, metadata={
        "help": "training image size; null: the denoiser's sample_size x the VAE factor"})
    # Flow backbones (SD3) only: how training timesteps are drawn (METHOD.md; public code: uniform).
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
        _check(self.resolution is None or self.resolution >= 8, f"model.resolution {self.resolution} must be >= 8")
        _check(self.lora_scale == 1.0 or bool(self.lora),
               f"model.lora_scale {self.lora_scale} needs model.lora (a LoRA to scale)")
        _check(self.timestep_sampling in ("uniform", "logit_normal"),
               f"model.timestep_sampling {self.timestep_sampling!r} is not one of 'uniform', 'logit_normal'")
        _check(self.timestep_shift > 0 and self.logit_std > 0,
               f"model.timestep_shift {self.timestep_shift} and model.logit_std {self.logit_std} must be > 0")

    def flow_options(self) -> dict:
        return {"timestep_sampling": self.timestep_sampling, "timestep_shift": self.timestep_shift,
                "logit_mean": self.logit_mean, "logit_std": self.logit_std}

    def variant(self):
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
    # The encodings are keyed by a content hash (data/cache.py), so one folder can serve many runs safely.
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
        _check(self.format in ("hf", "pairs") or not (self.streaming or self.hf_builder),
               f"data.streaming and data.hf_builder apply to Hugging Face datasets; set data.format hf "
               f"(data.format is {self.format!r})")
        _check(bool(self.split and self.image_column and self.caption_column),
               "data.split, data.image_column and data.caption_column must not be empty")


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
    # MM-DiT: one time table shared by all blocks' tokens, or one per block (public SD3 code), and its start:
    # zeros, or normal(0, time_init_std) (public code 0.02).
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


@dataclass
class MethodConfig:
    name: str = field(default="agsm", metadata={
        "help": "the training objective: agsm | softrepa | dsm (soft tokens); dpo | inpo | spo (the backbone itself, "
                "as the `tune` section says: preference optimisation, docs/preference.md)"})
    # AGSM (METHOD.md "AGSM loss")
    gamma_pos: float = field(default=1.0, metadata={
        "help": "AGSM: weight of the guidance shift in the positive pairs' targets, y + gamma_pos D"})
    gamma_neg: float = field(default=1.0, metadata={
        "help": "AGSM: weight of the shift in the negative pairs' targets, y - gamma_neg D; 0 drops psi- and the "
                "negative term (the positive-only ablation)"})
    temperature: float = field(default=0.1, metadata={
        "help": "AGSM: Plackett-Luce softmax temperature over the captions (public code value)"})
    # Where the implicit reward's error is measured (beyond the paper): in the model's target space (paper, code),
    # or in v-space, where an eps model's reward gaps no longer vanish at large t (docs/study.md, item 1).
    reward_space: str = field(default="target", metadata={
        "help": "where the implicit reward's error is measured: target (the model's target space: paper, code) | "
                "velocity (v-space, beyond the paper: an eps model's reward gaps no longer vanish at large t)"})
    shared_tokens: bool = field(default=False, metadata={"help": "ablation: psi+ and psi- are one tensor"})
    bradley_terry: bool = field(default=False, metadata={"help": "ablation: one negative per image (K = 2)"})
    ema_decay: float = field(default=0.9999, metadata={
        "help": "decay of the EMA tokens that give AGSM's targets, updated every step (public code 0.9999)"})
    # EMA tokens at step 0: a copy of the online tokens, or their own normal(0, init_std) draw (public code),
    # which keeps the targets' reference near the plain model for the first thousands of steps.
    ema_init: str = field(default="copy", metadata={
        "help": "EMA tokens at step 0: copy (of the online tokens) | independent (their own normal(0, init_std) "
                "draw, public code: keeps the targets' reference near the plain model for thousands of steps)"})
    # Hard negatives (beyond the paper): this fraction of each image's K - 1 negatives is replaced by its own
    # caption with one attribute changed (data/perturb.py), of the kinds listed.
    hard_negatives: float = field(default=0.0, metadata={
        "help": "beyond the paper: this fraction of each image's K - 1 negatives is replaced by its own caption "
                "with one attribute changed (data/perturb.py); 0 to 1"})
    hard_negative_kinds: list[str] = field(default_factory=lambda: ["color", "shape", "count", "relation"], metadata={
        "help": "which attributes a hard negative may change: a subset of color, shape, count, relation"})
    noise_sharing: str = field(default="image", metadata={
        "help": "one t and noise per image (image, the paper) or for the whole batch (batch, the public code)"})
    # Where the EMA prediction is evaluated (flow backbones): previous_step = one Euler step earlier, x_{t+dt}
    # (the paper's derivation); x_t (public code). auto: previous_step on flow backbones, x_t on UNets.
    ema_at: str = field(default="auto", metadata={
        "help": "where the EMA prediction is evaluated: previous_step (one Euler step earlier, x_{t+dt}: the paper's "
                "derivation) | x_t (public code) | auto (previous_step on flow backbones, x_t on UNets)"})
    ema_step: float = field(default=1000 / 28, metadata={
        "help": "dt of ema_at previous_step, in timesteps: 1000 / 28, one step of the 28-step SD3 sampler"})
    # SoftREPA
    softrepa_temperature: float = field(default=0.07, metadata={
        "help": "SoftREPA: tau in logits = scale * exp(-err / tau) (public code 0.07)"})
    softrepa_scale: float = field(default=4.0, metadata={
        "help": "SoftREPA: scale in logits = scale * exp(-err / tau) (public code 4)"})
    diagonal_weight: float = field(default=0.0, metadata={
        "help": "SoftREPA: weight d of the extra d * mean positive-pair error (public code: 10 on SD1.5/SDXL, 0 on "
                "SD3)"})
    # Preference optimisation of the backbone (docs/preference.md).
    dpo_beta: float = field(default=5000.0, metadata={
        "help": "Diffusion-DPO and InPO: beta in -log sigmoid(-beta/2 [(err_w - ref_w) - (err_l - ref_l)]) (the "
                "public Diffusion-DPO script's default and SD1.5 launcher: 5000; InPO's SD1.5 example: 2000)"})
    inpo_inversion_steps: int = field(default=10, metadata={
        "help": "InPO: DDIM inversion steps over the whole schedule (public code 10); x_t is the inversion's state at "
                "the last of its timesteps below t"})
    inpo_inversion_eta: float = field(default=0.1, metadata={
        "help": "InPO: noise added after each inversion step, times the DDIM posterior std (public code 0.1; 0: the "
                "deterministic inversion)"})
    inpo_invert_with: str = field(default="policy", metadata={
        "help": "InPO: the model that inverts, without gradient: policy (the model being trained, public code) | "
                "reference (the frozen start)"})
    spo_steps: int = field(default=20, metadata={"help": "SPO: DDIM sampling steps of the trajectories (public 20)"})
    spo_eta: float = field(default=1.0, metadata={
        "help": "SPO: DDIM eta of the sampling (1: DDPM-like, the public setting; > 0 so steps have a density)"})
    spo_guidance: float = field(default=5.0, metadata={
        "help": "SPO: classifier-free guidance of the sampling and of the trained log-probabilities (public 5)"})
    spo_candidates: int = field(default=4, metadata={
        "help": "SPO: candidate x_{t-1} drawn from the same x_t (public SD1.5 config 4)"})
    spo_divert_start: int = field(default=4, metadata={
        "help": "SPO: the first sampling step whose candidates are ranked (public 4): the ranked step is drawn "
                "uniformly from [spo_divert_start, spo_steps)"})
    spo_threshold: float = field(default=0.3, metadata={
        "help": "SPO: a best/worst pair counts when softmax([s_best, s_worst]) differs by more than this (public 0.3)"})
    spo_beta: float = field(default=10.0, metadata={"help": "SPO: beta of the DPO-style loss (public 10)"})
    spo_clip: float = field(default=0.1, metadata={
        "help": "SPO: the probability ratio p_theta / p_ref is clipped to [1 - spo_clip, 1 + spo_clip] (public 0.1)"})
    spo_scorer: str = field(default="shapes_judge", metadata={
        "help": "SPO: the step-aware scorer of the candidates' predicted images: shapes_judge (ShapesWorld's exact "
                "judge) or module.path:name of a callable (images, prompts, t) -> scores"})

    def __post_init__(self):
        _check(self.name in METHOD_NAMES,
               f"method.name {self.name!r} is not one of {', '.join(repr(n) for n in METHOD_NAMES)}")
        _check(self.dpo_beta > 0 and self.spo_beta > 0, "method.dpo_beta and method.spo_beta must be > 0")
        _check(self.inpo_inversion_steps >= 1, f"method.inpo_inversion_steps {self.inpo_inversion_steps} must be >= 1")
        _check(self.inpo_inversion_eta >= 0, f"method.inpo_inversion_eta {self.inpo_inversion_eta} must be >= 0")
        _check(self.inpo_invert_with in ("policy", "reference"),
               f"method.inpo_invert_with {self.inpo_invert_with!r} is not one of 'policy', 'reference'")
        _check(self.spo_eta > 0, f"method.spo_eta {self.spo_eta} must be > 0 (SPO needs stochastic steps)")
        _check(self.spo_candidates >= 2, f"method.spo_candidates {self.spo_candidates} must be >= 2")
        _check(0 <= self.spo_divert_start < self.spo_steps,
               f"method.spo_divert_start {self.spo_divert_start} must be in [0, spo_steps {self.spo_steps})")
        _check(0 < self.spo_clip < 1, f"method.spo_clip {self.spo_clip} must be in (0, 1)")
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
class TrainConfig:
    output_dir: str = field(default="runs/agsm", metadata={
        "help": "the run folder: config.yaml, checkpoints/, the token files, logs and (by default) the data cache"})
    steps: int = field(default=1000, metadata={"help": "optimiser steps of the whole run"})
    images_per_step: int = field(default=4, metadata={
        "help": "images per process and step; each image meets every caption of the batch (4 x 4 = 16 pairs)"})
    gather_captions: bool = field(default=False, metadata={
        "help": "with several processes, contrast each image with the global batch's captions"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (the cosine schedule's peak)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    restart_every: int = field(default=1000, metadata={
        "help": "cosine schedule with warm restarts: iterations per cycle"})
    min_lr: float = field(default=0.0, metadata={"help": "the cosine schedule's floor"})
    mixed_precision: str = field(default="no", metadata={
        "help": "no | bf16 | fp16: the frozen backbone's weights and autocast (fp16 adds loss scaling)"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute the denoiser's activations in the backward pass: less memory, slower steps"})
    # Speed options (training/speed.py says what each does and why; benchmarks/step_options.py measures them).
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the denoiser: faster steps once compiled; the first steps compile (minutes on a CPU "
                "with a cold cache)"})
    channels_last: bool = field(default=False, metadata={
        "help": "store the denoiser's convolution weights channels-last (NHWC)"})
    attention_precision: str = field(default="auto", metadata={
        "help": "auto | native | fp32: the precision of attention calls that carry a gradient and have few keys "
                "(<= 256); auto runs them in fp32 on a CPU under bf16 (torch's bf16 CPU attention backward is slow "
                "there), natively elsewhere"})
    checkpoint_every: int = field(default=500, metadata={
        "help": "write checkpoints/checkpoint-N every this many steps (and at the last step)"})
    # diffusers' training scripts' name for the same setting; `keep_checkpoints` is its deprecated alias.
    checkpoints_total_limit: int | None = field(default=2, metadata={
        "help": "how many checkpoints to keep, the newest; null keeps all (old name: keep_checkpoints)"})
    log_every: int = field(default=10, metadata={"help": "log loss, lr and token norms every this many steps"})
    seed: int = field(default=0, metadata={"help": "seeds the tokens' start, the batch order and every step's draws"})
    # Non-finite steps (NaN/inf loss or gradient) skipped before training stops; each is counted and logged.
    max_bad_steps: int = field(default=0, metadata={
        "help": "non-finite steps (NaN/inf loss or gradient) skipped before training stops; each is counted and "
                "logged"})
    # The public code samples with the online tokens (METHOD.md, "Details of the public training code").
    export_tokens: str = field(default="online", metadata={
        "help": "which tokens are the run's soft_tokens.safetensors: online (the trained tokens, what the public "
                "code samples with) | ema (their moving average); the other is written beside it as "
                "soft_tokens_ema.safetensors or soft_tokens_online.safetensors"})
    # Tracking and validation images (docs/data.md "Tracking and validation images"; training/trackers.py, training/validation_images.py).
    report_to: str = field(default="tensorboard", metadata={
        "help": "where metrics and validation images go: tensorboard (<output_dir>/agsm) | wandb | all | none; "
                "train_log.jsonl is written in every case"})
    validation_prompts: list[str] = field(default_factory=list, metadata={
        "help": "prompts drawn with the current tokens every validation_every steps and at the end (and once at "
                "step 0 without tokens) into <output_dir>/validation/step-N/<i>.png; empty: no validation"})
    validation_every: int = field(default=500, metadata={"help": "steps between validation images"})
    validation_seed: int = field(default=0, metadata={
        "help": "validation image i is drawn from seed validation_seed + i"})
    validation_steps: int | None = field(default=None, metadata={
        "help": "sampler steps of the validation images; null: the model's recommended sampler, else its "
                "architecture's (SD1.5/SDXL 30, SD3 28)"})
    validation_guidance: float | None = field(default=None, metadata={
        "help": "classifier-free guidance of the validation images; null: as validation_steps"})
    max_grad_norm: float | None = field(default=None, metadata={
        "help": "clip the gradient's global norm to this before each step (the preference scripts use 1.0); null: "
                "no clipping"})

    def __post_init__(self):
        _check(self.steps >= 1, f"train.steps {self.steps} must be >= 1")
        _check(self.report_to in ("tensorboard", "wandb", "all", "none"),
               f"train.report_to {self.report_to!r} is not one of 'tensorboard', 'wandb', 'all', 'none'")
        _check(self.validation_every >= 1, f"train.validation_every {self.validation_every} must be >= 1")
        _check(self.validation_steps is None or self.validation_steps >= 1,
               f"train.validation_steps {self.validation_steps} must be >= 1 (or null for the model's sampler)")
        _check(all(p.strip() for p in self.validation_prompts),
               f"train.validation_prompts {self.validation_prompts} holds an empty prompt; remove it")
        _check(self.images_per_step >= 2, f"train.images_per_step {self.images_per_step} must be >= 2 "
               "(contrast needs another caption in the batch)")
        _check(self.mixed_precision in ("no", "bf16", "fp16"),
               f"train.mixed_precision {self.mixed_precision!r} is not one of 'no', 'bf16', 'fp16'")
        _check(self.attention_precision in ("auto", "native", "fp32"),
               f"train.attention_precision {self.attention_precision!r} is not one of 'auto', 'native', 'fp32'")
        _check(self.checkpoint_every >= 1 and self.restart_every >= 1,
               "train.checkpoint_every and restart_every must be >= 1")
        _check(self.checkpoints_total_limit is None or self.checkpoints_total_limit >= 1,
               f"train.checkpoints_total_limit {self.checkpoints_total_limit} must be >= 1 (or null to keep all)")
        _check(self.max_bad_steps >= 0, f"train.max_bad_steps {self.max_bad_steps} must be >= 0")
        _check(self.export_tokens in ("online", "ema"),
               f"train.export_tokens {self.export_tokens!r} is not one of 'online', 'ema'")
        _check(self.max_grad_norm is None or self.max_grad_norm > 0,
               f"train.max_grad_norm {self.max_grad_norm} must be > 0 (or null for no clipping)")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the frozen diffusers backbone"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "images, captions and their cache"})
    tokens: TokenConfig = field(default_factory=TokenConfig, metadata={"help": "the soft tokens and where they go"})
    method: MethodConfig = field(default_factory=MethodConfig, metadata={"help": "the objective and its settings"})
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
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}


# Old option names still read (with a warning), because the config.yaml of earlier runs holds them:
# (section, old name) -> new name.
RENAMED_OPTIONS = {("train", "keep_checkpoints"): "checkpoints_total_limit"}


def _apply_renames(raw: dict) -> dict:
    """`raw` with deprecated option names replaced by their new names, each logged once as a warning."""
    out = dict(raw)
    for (section, old), new in RENAMED_OPTIONS.items():
        values = out.get(section)
        if not isinstance(values, dict) or old not in values:
            continue
        _check(new not in values, f"{section}.{old} is the old name of {section}.{new}; give only {section}.{new}")
        values = dict(values)
        values[new] = values.pop(old)
        out[section] = values
        log.warning("config option %s.%s is deprecated: it is now called %s.%s (read as that)", section, old,
                    section, new)
    return out


def from_dict(raw: dict) -> Config:
    """A Config from nested dicts (YAML, overrides); every value is checked against its field's type first."""
    _check(isinstance(raw, dict), f"a config must be a mapping of sections (model, data, ...), got "
           f"{type(raw).__name__} {raw!r}")
    sections = _section_types()
    unknown = sorted(set(raw) - set(sections))
    _check(not unknown, f"unknown config sections {unknown}; valid: {sorted(sections)}")
    raw = _apply_renames(raw)
    built = {}
    for name, cls in sections.items():
        values = coerce_section(name, cls, raw.get(name))
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - valid)
        _check(not bad, f"unknown options {[f'{name}.{b}' for b in bad]}; valid {name} options: {sorted(valid)}")
        built[name] = cls(**values)
    return Config(**built)


def option_help() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """[(section, its help, [('--section.option', TYPE, 'help (default: value)'), ...]), ...] from the dataclass
    fields' help metadata: what `agsm train -h` lists, so every option is documented exactly once."""
    table = []
    for section in dataclasses.fields(Config):
        cls = section.default_factory
        hints = typing.get_type_hints(cls)
        options = []
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            options.append((f"--{section.name}.{f.name}", _type_name(hints[f.name]),
                            f"{f.metadata.get('help', '')} (default: {_shown(default)})"))
        table.append((section.name, section.metadata.get("help", ""), options))
    return table


def _type_name(declared) -> str:
    """INT, FLOAT, STR, BOOL, INT|NULL, LIST[STR]: the metavar `agsm train -h` shows for a field type."""
    if typing.get_origin(declared) is list:
        return f"LIST[{_type_name(typing.get_args(declared)[0])}]"
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    if args and len(args) < len(typing.get_args(declared)):  # X | None
        return f"{_type_name(args[0])}|NULL"
    return declared.__name__.upper()


def _shown(value) -> str:
    """A default as one would write it in YAML or on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if value == "" else str(value)


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


def shipped_configs() -> list[str]:
    """Names of the configs that ship in the package (agsm/configs/<name>.yaml), for `--config <name>`."""
    return sorted(p.name.removesuffix(".yaml") for p in SHIPPED_CONFIGS.iterdir() if p.name.endswith(".yaml"))


def resolve_config(name_or_path: str | Path) -> Traversable:
    """A config file: `name_or_path` if it is a file, else the shipped config of that name (sd15, sd3 ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    shipped = SHIPPED_CONFIGS / f"{text.removesuffix('.yaml')}.yaml"
    if "/" not in text and "\\" not in text and shipped.is_file():
        return shipped
    raise ValueError(f"config {text!r} is neither a file nor a shipped config; give a YAML file's path or one of "
                     f"the shipped names: {', '.join(shipped_configs())}")


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """The config of a YAML file (or a shipped config's name, e.g. 'sd15'), then the overrides on top."""
    raw = {}
    if path is not None:
        path = resolve_config(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
        _check(isinstance(raw, dict), f"config file {path} must hold a mapping of sections (model:, data:, "
               f"train: ...), not a {type(raw).__name__}")
        raw = _apply_renames(raw)
    extra = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    extra = _apply_renames(extra)  # renamed per source, so an override of the new name wins over a file's old name
    for section, values in extra.items():
        current = raw.setdefault(section, {})
        _check(isinstance(current, dict), f"config section {section!r} must be a mapping of options, got "
               f"{type(current).__name__} {current!r}")
        current.update(values)
    return from_dict(raw)
