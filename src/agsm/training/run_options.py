"""The `train` section of a run's configuration: how the run goes (optimiser and schedule, precision and speed,
checkpoints, logging, validation images, the exported tokens), apart from what it trains (training/config.py's
model, data, tokens, tune and method sections). Each option carries its help text, which `agsm train --help` prints.
"""
from __future__ import annotations

from dataclasses import dataclass, field

LR_SCHEDULERS = ("constant", "cosine", "cosine_with_restarts", "linear")  # training/lr_schedules.py
MAX_SEED = 2**32 - 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class TrainConfig:
    output_dir: str = field(default="runs/agsm", metadata={
        "help": "the run folder: config.yaml, checkpoints/, the token files, logs and (by default) the data cache"})
    steps: int = field(default=1000, metadata={"help": "optimiser steps of the whole run"})
    images_per_step: int = field(default=4, metadata={
        "help": "images per process and step; each image meets every caption of the batch (4 x 4 = 16 pairs)"})
    # training/loop.py: one optimiser update is this many micro-batches (docs/method.md "Batches and accumulation").
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "micro-batches of images_per_step images (per process) whose mean gradient makes one optimiser "
                "update; train.steps, the lr schedule, EMA, logs and checkpoints count updates. DSM, DPO and InPO "
                "losses are per-sample means, so N micro-batches of b equal one batch of N x b; AGSM and SoftREPA "
                "contrast each image with its batch's captions (and SPO ranks one step per batch), so each "
                "micro-batch keeps its own K = b captions (b x processes with gather_captions) as negatives"})
    gather_captions: bool = field(default=False, metadata={
        "help": "with several processes, contrast each image with the global batch's captions"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (the cosine schedule's peak)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    restart_every: int = field(default=1000, metadata={
        "help": "cosine schedule with warm restarts: iterations per cycle"})
    min_lr: float = field(default=0.0, metadata={
        "help": "the schedule's floor (cosine, cosine_with_restarts, linear); constant ignores it"})
    lr_scheduler: str = field(default="cosine_with_restarts", metadata={
        "help": "how the learning rate moves (training/lr_schedules.py): constant | cosine (lr to min_lr once "
                "over the run) | cosine_with_restarts (lr to min_lr every restart_every steps) | linear (lr to "
                "min_lr in a straight line over the run)"})
    lr_warmup_steps: int = field(default=0, metadata={
        "help": "steps over which the learning rate first rises linearly to lr; the schedule follows them"})
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
    # diffusers' training scripts' name for the same setting.
    checkpoints_total_limit: int | None = field(default=2, metadata={
        "help": "how many checkpoints to keep, the newest; null keeps all (old name: keep_checkpoints)"})
    log_every: int = field(default=10, metadata={"help": "log loss, lr and token norms every this many steps"})
    seed: int = field(default=0, metadata={"help": "seeds the tokens' start, the batch order and every step's draws"})
    max_bad_steps: int = field(default=0, metadata={
        "help": "non-finite steps (NaN/inf loss or gradient) skipped before training stops; each is counted and "
                "logged"})
    # The public code samples with the online tokens (docs/method.md, "Details of the public training code").
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
    num_validation_images: int = field(default=1, metadata={
        "help": "images of each validation prompt per round; image k of a round (prompt k // n) has seed "
                "validation_seed + k"})
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
        # Checked here, before any model loads: a bad rate otherwise surfaces in the optimiser's own words.
        # 0 is allowed: a run that never moves its start (tests and studies use it as the reference of "no training")
        _check(self.lr >= 0, f"train.lr {self.lr} must be >= 0 (the soft-token configs use 1e-3; 0 keeps the start)")
        _check(self.weight_decay >= 0, f"train.weight_decay {self.weight_decay} must be >= 0")
        _check(self.min_lr >= 0, f"train.min_lr {self.min_lr} must be >= 0 (the floor the schedule decays towards)")
        # above lr the decaying schedules would climb instead; the constant schedule never reads it
        _check(self.min_lr <= self.lr or self.lr_scheduler == "constant", f"train.min_lr {self.min_lr} must be in "
               f"[0, train.lr {self.lr}]: it is the floor the schedule decays towards")
        _check(self.log_every >= 1, f"train.log_every {self.log_every} must be >= 1")
        # a 32-bit seed, as diffusers' scripts take: torch.Generator.manual_seed refuses what passes 64 bits once the
        # step's seed (training/batches.py step_generator: seed * 1_000_003 + ...) is formed from it
        _check(0 <= self.seed <= MAX_SEED, f"train.seed {self.seed} must be in [0, {MAX_SEED}]")
        _check(0 <= self.validation_seed <= MAX_SEED,
               f"train.validation_seed {self.validation_seed} must be in [0, {MAX_SEED}]")
        _check(self.validation_guidance is None or self.validation_guidance >= 0,
               f"train.validation_guidance {self.validation_guidance} must be >= 0 (or null for the model's "
               "sampler)")
        _check(self.report_to in ("tensorboard", "wandb", "all", "none"),
               f"train.report_to {self.report_to!r} is not one of 'tensorboard', 'wandb', 'all', 'none'")
        _check(self.validation_every >= 1, f"train.validation_every {self.validation_every} must be >= 1")
        _check(self.num_validation_images >= 1,
               f"train.num_validation_images {self.num_validation_images} must be >= 1")
        _check(self.lr_scheduler in LR_SCHEDULERS,
               f"train.lr_scheduler {self.lr_scheduler!r} is not one of {', '.join(map(repr, LR_SCHEDULERS))}")
        _check(self.lr_warmup_steps >= 0, f"train.lr_warmup_steps {self.lr_warmup_steps} must be >= 0 (0: none)")
        _check(self.validation_steps is None or self.validation_steps >= 1,
               f"train.validation_steps {self.validation_steps} must be >= 1 (or null for the model's sampler)")
        _check(all(p.strip() for p in self.validation_prompts),
               f"train.validation_prompts {self.validation_prompts} holds an empty prompt; remove it")
        _check(self.images_per_step >= 2, f"train.images_per_step {self.images_per_step} must be >= 2 "
               "(contrast needs another caption in the batch)")
        _check(self.gradient_accumulation_steps >= 1, f"train.gradient_accumulation_steps "
               f"{self.gradient_accumulation_steps} must be >= 1 (1: every micro-batch is an update)")
        _check(self.mixed_precision in ("no", "bf16", "fp16"),
               f"train.mixed_precision {self.mixed_precision!r} is not one of 'no', 'bf16', 'fp16'")
        _check(self.attention_precision in ("auto", "native", "fp32"),
               f"train.attention_precision {self.attention_precision!r} is not one of 'auto', 'native', 'fp32'")
        _check(self.checkpoint_every >= 1, f"train.checkpoint_every {self.checkpoint_every} must be >= 1")
        _check(self.restart_every >= 1, f"train.restart_every {self.restart_every} must be >= 1")
        _check(self.checkpoints_total_limit is None or self.checkpoints_total_limit >= 1,
               f"train.checkpoints_total_limit {self.checkpoints_total_limit} must be >= 1 (or null to keep all)")
        _check(self.max_bad_steps >= 0, f"train.max_bad_steps {self.max_bad_steps} must be >= 0")
        _check(self.export_tokens in ("online", "ema"),
               f"train.export_tokens {self.export_tokens!r} is not one of 'online', 'ema'")
        _check(self.max_grad_norm is None or self.max_grad_norm > 0,
               f"train.max_grad_norm {self.max_grad_norm} must be > 0 (or null for no clipping)")
