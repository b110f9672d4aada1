"""Train soft tokens (AGSM, SoftREPA or plain DSM) on a frozen diffusers backbone, or the backbone itself with a
preference objective (Diffusion-DPO, InPO, SPO: a LoRA or the whole denoiser; docs/preference.md).

    agsm train --config sd15 --train.steps 2000 --data.path my_images/
    agsm train --config sd15-dpo --data.path pairs/        # preference pairs; writes <output_dir>/unet and the LoRA
    agsm train --config sd15 --model.denoiser runs/sd15-dpo/unet ...   # tokens on the tuned backbone
    accelerate launch --num_processes 2 -m agsm.cli train --config ... --train.gather_captions true
    agsm train --config ... --resume         # continue from the last complete checkpoint
    agsm train --resume runs/sd15-agsm       # the same, with the run's own config.yaml
    agsm train --config ... --overwrite      # start over in a folder that holds a run

Every per-step random draw comes from a generator seeded by (seed, micro-batch, process), and the batch order
from (seed, epoch), so a resumed run repeats exactly what the uninterrupted run would have done.
With train.gradient_accumulation_steps N, one step (an optimiser update: what train.steps, the lr schedule, the EMA,
logs, validation and checkpoints count) sums the gradients of N micro-batches, each divided by N by accelerate's
backward, so the update follows their mean; gradients are all-reduced once per update, and the logged loss is the
micro-batches' mean. Methods whose loss couples a batch (the spec's batch_coupling: in-batch negatives) keep each
micro-batch's own negatives (docs/method.md, "Batches and accumulation"). A step with a
non-finite loss or gradient is never applied (training/guard.py); the run folder has one owner (training/run_folder.py).
What is trained is a small strategy (training/trainables.py): the loop below drives tokens and backbone weights alike.
What a step takes is built in training/batches.py, what it trains in training/trainables.py.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from ..backbones.factory import load_backbone
from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import Config
from ..data import build_or_load_cache
from ..objectives import get_method
from ..utils.counts import count
from ..utils.progress import progress
from .run_folder import check_shared_run_folder, claim_run_folder, forget_log_after, resume_point
from .trainables import make_trainable
from .batches import batch_files, batch_size_of, build_step_batch, load_records, micro_batch_ids, step_generator
from .guard import StepGuard
from .speed import prepare_denoiser
from .trackers import accelerate_log_with, check_report_to, tracker_init_kwargs
from .lr_schedules import make_lr_scheduler
from .validation_images import make_validator

log = logging.getLogger("agsm.train")
WEIGHT_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def train(config: Config, resume: bool | str | Path = False, overwrite: bool = False) -> Path:
    """Train into config.train.output_dir; returns the token file (or, for dpo / inpo / spo, the tuned denoiser's
    folder). The folder is locked for the run:
    see training/run_folder.py for what --resume and --overwrite allow. `resume`: True or 'latest' continues from the
    latest checkpoint; a path, from that checkpoint (or run folder) of this run."""
    out = Path(config.train.output_dir)
    start = resume_point(resume, out)  # a --resume PATH that names no checkpoint of this run fails here
    check_report_to(config.train.report_to)  # a missing tracker package fails now, not after the model loads
    accelerator = Accelerator(mixed_precision=config.train.mixed_precision,
                              gradient_accumulation_steps=config.train.gradient_accumulation_steps,
                              log_with=accelerate_log_with(config.train.report_to), project_dir=str(out))
    # accelerate lets the environment override the count (its DeepSpeed launcher sets it); the loop draws
    # config.train's micro-batches, so the two must agree.
    accelerates = accelerator.gradient_accumulation_steps
    if accelerates != config.train.gradient_accumulation_steps:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        raise ValueError(f"the environment's ACCELERATE_GRADIENT_ACCUMULATION_STEPS (accelerate launch "
                         f"--gradient_accumulation_steps sets it) is {accelerates} but "
                         f"train.gradient_accumulation_steps is {config.train.gradient_accumulation_steps}; set "
                         "--train.gradient_accumulation_steps and leave accelerate's option out")
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    with contextlib.ExitStack() as cleanup:
        # accelerate keeps its state per process; forget it so a later train() may pick another precision.
        cleanup.callback(AcceleratorState._reset_state, reset_partial_state=False)
        cleanup.callback(GradientState._reset_state)  # its accumulation count and sync flag too
        if accelerator.is_main_process:
            cleanup.callback(claim_run_folder(out, config, bool(resume), overwrite).release)
        accelerator.wait_for_everyone()
        check_shared_run_folder(out, accelerator)  # several machines: one shared run folder, or all stop now
        return _train(config, accelerator, out, bool(resume), cleanup, start)


def _train(config: Config, accelerator, out: Path, resume: bool, cleanup: contextlib.ExitStack,
           start: Path | None = None) -> Path:
    tc = config.train
    records = load_records(config)  # bad data paths fail here, before the model loads
    backbone = load_backbone(config.model.source(), dtype=WEIGHT_DTYPES[tc.mixed_precision],
                             resolution=config.model.resolution, variant=config.model.backbone_variant(),
                             **config.model.flow_options())
    backbone.to(accelerator.device)
    # gradient checkpointing, channels_last, compile; the steps' attention precision (training/speed.py)
    step_context = prepare_denoiser(backbone.denoiser, tc, accelerator.device, WEIGHT_DTYPES[tc.mixed_precision])
    cache_root = Path(config.data.cache_dir or out / "cache")  # the run's own, unless a shared one is named
    with accelerator.main_process_first():
        build = build_or_load_cache
        if config.data.format == "pairs":
            from ..preference.pair_data import build_or_load_pairs as build
        # Pairs are always centre-cropped and never flipped (config.DataConfig refuses otherwise).
        preprocessing = {} if config.data.format == "pairs" else {"center_crop": config.data.center_crop,
                                                                   "random_flip": config.data.random_flip}
        dataset = build(records, backbone, backbone.resolution, cache_root, cache_text=config.data.cache_text,
                        min_size=config.data.min_size, progress=accelerator.is_main_process, **preprocessing)
    global_batch = tc.images_per_step * accelerator.num_processes
    if dataset.num_images // global_batch == 0:
        raise ValueError(f"the dataset has {dataset.num_images} usable images, fewer than one global batch "
                         f"({global_batch}); lower train.images_per_step or add images")

    torch.manual_seed(tc.seed)  # initialisation (tokens, LoRA) is the same on every process
    trainable = make_trainable(config, backbone, accelerator)
    cleanup.callback(trainable.remove)
    params = list(trainable.parameters())
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    schedule = make_lr_scheduler(optimizer, tc)  # the default is the CosineAnnealingWarmRestarts it always was
    optimizer = accelerator.prepare(optimizer)  # loss scaling for fp16
    state = TrainState()
    if resume:
        last = start or latest_checkpoint(out)
        if last is None:
            log.warning("--resume: no checkpoint in %s, starting from step 0", out)
        else:
            load_checkpoint(accelerator, last, state, trainable.trained, trainable.averaged, optimizer, schedule,
                            trainable.checkpoint_names)
            log.info("resumed from %s at step %d", last, state.step)
    if accelerator.is_main_process:
        forget_log_after(out, state.step)
        _log_start(config, backbone, dataset, accelerator, out, state.step)

    step_fn = get_method(config.method.name).step
    guard = StepGuard(tc.max_bad_steps, tc.lr, lambda: latest_checkpoint(out))
    if accelerator.is_main_process:
        accelerator.init_trackers("agsm", config=_flat(config.to_dict()), init_kwargs=tracker_init_kwargs(out))
    cleanup.callback(accelerator.end_training)
    validator = make_validator(config, backbone, trainable.switch, out, accelerator)
    if validator and state.step == 0:
        validator.run(0, with_tokens=False)  # the base model's images, to compare the rounds with
    bar = progress(total=tc.steps, initial=state.step, disable=not accelerator.is_main_process,
                   desc=config.method.name, unit="step")
    cleanup.callback(bar.close)  # also on an error, so its message starts on a line of its own
    # The bar shows the last logged loss: after a resume, the run's log has it (lines past the checkpoint were just
    # dropped); with none there, the first step reads its own loss, once.
    started, pairs_done, shown_loss = time.perf_counter(), 0, _last_logged_loss(out)
    accumulation = tc.gradient_accumulation_steps
    while state.step < tc.steps:
        step = state.step
        # Update `step` takes micro-batches step N .. step N + N - 1 (training/batches.py); the gradients add up
        # between them and are all-reduced once, after the last.
        loss, logs, pairs, used = 0.0, {}, 0, []
        for micro in range(step * accumulation, (step + 1) * accumulation):
            ids = micro_batch_ids(dataset.num_images, tc.seed, micro, tc.images_per_step, accelerator.process_index,
                                  accelerator.num_processes)
            generator = step_generator(tc.seed, micro, accelerator.process_index)
            batch = build_step_batch(dataset, ids, generator, accelerator, config, accelerator.device, backbone)
            # accumulate(): accelerate's count of micro-batches, so its optimiser steps only after the last; the
            # step's attention precision (training/speed.py) over forward and backward alike.
            with accelerator.accumulate(), step_context():
                with accelerator.autocast():
                    micro_loss, micro_logs = step_fn(trainable.denoiser, batch, config.method, generator)
                accelerator.backward(micro_loss)  # divided by N there: the update's gradient is the mean
            # Kept on the device, as tensors: the update's mean is read only on logged steps (below).
            loss = loss + micro_loss.detach() / accumulation
            logs = {k: logs.get(k, 0.0) + v / accumulation for k, v in micro_logs.items()}
            pairs += batch_size_of(batch)
            used.append(ids)
        for p in params:  # tokens and LoRAs are small: an all-reduce of their grads replaces a DDP wrapper
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
        if tc.max_grad_norm is not None:
            accelerator.clip_grad_norm_(params, tc.max_grad_norm)
        if guard.should_skip(accelerator, state, loss, trainable, lambda: batch_files(dataset, torch.cat(used))):
            optimizer.zero_grad(set_to_none=True)
            schedule.step()  # the learning rate stays a function of the step, skipped or not
        else:
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            guard.check_tokens(state, trainable)
            trainable.after_step()
        state.step += 1

        pairs_done += pairs * accelerator.num_processes
        rate = pairs_done / (time.perf_counter() - started)
        logged = state.step % tc.log_every == 0 or state.step == tc.steps
        # Reading the loss waits for the device, so only logged steps do (issue 17: the step guard's two finite
        # checks, before and after the update, are a step's only host-device syncs); the bar shows the last logged
        # loss. The postfix first, without a redraw: the line update() shows then carries it.
        if logged or shown_loss is None:
            shown_loss = f"{loss.item():.4f}"
        bar.set_postfix(loss=shown_loss, pairs_per_s=f"{rate:.1f}", refresh=False)
        bar.update(1)
        if logged:
            record = {"loss": loss.item(), "lr": schedule.get_last_lr()[0], "pairs_per_s": rate,
                      "skipped_steps": state.skipped, **{k: float(v) for k, v in logs.items()},
                      **trainable.norms()}
            accelerator.log(record, step=state.step)
            if accelerator.is_main_process:  # the same numbers as plain JSON lines, for scripts and studies
                with open(out / "train_log.jsonl", "a") as f:
                    f.write(json.dumps({"step": state.step, **record}) + "\n")
        if validator and validator.due(state.step, tc.steps):  # before the checkpoint: a resume never skips a round
            drawn = validator.run(state.step)
            log.info("step %d: validation images in %s", state.step, drawn[0].parent if drawn else validator.folder)
        if state.step % tc.checkpoint_every == 0 or state.step == tc.steps:
            written = save_checkpoint(accelerator, out, state, tc.checkpoints_total_limit, trainable.trained,
                                      trainable.averaged, optimizer, schedule, getattr(trainable, "token_meta", None),
                                      trainable.checkpoint_names)
            if accelerator.is_main_process:
                log.info("step %d: wrote checkpoint %s", state.step, written)

    result = trainable.export(out, config, state.step, dataset.num_images) if accelerator.is_main_process else None
    if result is not None:
        log.info("wrote %s", result)
    return result if result is not None else _export_path(out, trainable, backbone)


def _log_start(config: Config, backbone, dataset, accelerator, out: Path, step: int) -> None:
    """One summary of what this run is about to do, before its first step: a log read later says what ran."""
    tc, method = config.train, config.to_dict()["method"]
    settings = ", ".join(f"{k} {v}" for k, v in method.items() if k != "name")  # the named method's options only
    captions = dataset.captions if isinstance(dataset.captions, list) else None  # pair data: one prompt per pair
    size = count(dataset.num_images, "pair" if config.data.format == "pairs" else "image")
    if captions is not None:
        size += f" with {count(len(captions), 'caption')}"
    schedule = tc.lr_scheduler + (f" after {tc.lr_warmup_steps} warm-up steps" if tc.lr_warmup_steps else "")
    log.info("training %s (%s) on %s from %s; method %s (%s); %s from step %d, %d images per step x %s%s, "
             "lr %g (%s); device %s, dtype %s; output %s",
             config.model.path, backbone.architecture, size, config.data.path, config.method.name, settings,
             count(tc.steps, "step"), step, tc.images_per_step,
             count(accelerator.num_processes, "process", "processes"), _accumulation(config, accelerator), tc.lr,
             schedule, accelerator.device, str(WEIGHT_DTYPES[tc.mixed_precision]).removeprefix("torch."), out)


def _accumulation(config: Config, accelerator) -> str:
    """The start line's words on gradient accumulation: '' without it; with it, the images per update and, for a
    method whose loss couples its batch, that each micro-batch keeps its own negatives."""
    tc, n = config.train, config.train.gradient_accumulation_steps
    if n == 1:
        return ""
    text = (f" x {n} accumulated micro-batches ({tc.images_per_step * accelerator.num_processes * n} images per "
            "optimiser step)")
    spec = get_method(config.method.name)
    if spec.batch_coupling:
        captions = tc.images_per_step * (accelerator.num_processes if tc.gather_captions else 1)
        text += (f"; {spec.name} couples its batch ({spec.batch_coupling}): each micro-batch is a batch of its own"
                 + (f" (K = {captions} captions)" if spec.data == "captions" else "")
                 + f" and an update follows the mean of {n} such batches' gradients, not one batch {n} times as large")
    return text


def _last_logged_loss(out: Path) -> str | None:
    """The loss of train_log.jsonl's last line, as the bar shows it, or None (a new run, or none logged yet)."""
    from .model_card import final_metrics

    last = final_metrics(out / "train_log.jsonl")
    return f"{last['loss']:.4f}" if last and isinstance(last.get("loss"), (int, float)) else None


def _export_path(out: Path, trainable, backbone) -> Path:
    """Where the main process writes the run's result (what other processes return)."""
    from ..tokens.token_file import FILE_NAME

    return out / (FILE_NAME if trainable.kind == "tokens" else backbone.denoiser_name)


def _flat(tree: dict, prefix: str = "") -> dict:
    """TensorBoard hparams take scalars and strings only."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, name + "."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
