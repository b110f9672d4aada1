"""Train soft tokens (AGSM, SoftREPA or plain DSM) on a frozen diffusers backbone, or the backbone itself with a
preference objective (Diffusion-DPO, InPO, SPO: a LoRA or the whole denoiser; docs/preference.md).

    agsm train --config sd15 --train.steps 2000 --data.path my_images/
    agsm train --config sd15-dpo --data.path pairs/        # preference pairs; writes <output_dir>/unet and the LoRA
    agsm train --config sd15 --model.denoiser runs/sd15-dpo/unet ...   # tokens on the tuned backbone
    accelerate launch --num_processes 2 -m agsm.cli train --config ... --train.gather_captions true
    agsm train --config ... --resume         # continue from the last complete checkpoint
    agsm train --resume runs/sd15-agsm       # the same, with the run's own config.yaml
    agsm train --config ... --overwrite      # start over in a folder that holds a run

Every per-step random draw comes from a generator seeded by (seed, step, process), and the batch order
from (seed, epoch), so a resumed run repeats exactly what the uninterrupted run would have done. A step with a
non-finite loss or gradient is never applied (training/guard.py); the run folder has one owner (training/run_folder.py).
What is trained is a small strategy (training/trainables.py): the loop below drives tokens and backbone weights alike.
Over 300 lines: the one training loop for tokens and preference objectives; its parts already live in their modules.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from ..backbones.base import TextCond
from ..backbones.factory import load_backbone
from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import Config
from ..data import build_or_load_cache, read_coco, read_hf_dataset, read_imagefolder
from ..data.perturb import distinct_perturbations
from .export import token_metadata
from ..objectives import PairBatch, get_method, method_names
from ..objectives.preference_batch import PreferenceBatch, PromptBatch
from ..objectives.pairs import in_batch_captions, one_negative_captions, with_hard_negatives
from ..utils.progress import progress
from .run_folder import claim_run_folder, forget_log_after, resume_point
from ..tokens import SoftTokens, install_tokens, placement_for
from .trainables import TokenTrainable
from .guard import StepGuard
from .speed import prepare_denoiser
from .trackers import accelerate_log_with, check_report_to, tracker_init_kwargs
from .validation_images import make_validator

log = logging.getLogger("agsm.train")
WEIGHT_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 7_919 + rank)


def load_records(config: Config):
    """The records of config.data: a list of Records, or (data.format hf, pairs) a source read once by the cache
    builder."""
    data = config.data
    if not data.path:
        raise ValueError("data.path is empty; set it to an image folder with metadata.jsonl (or COCO images, or a "
                         "Hugging Face dataset with data.format hf, or preference pairs with data.format pairs)")
    kind = get_method(config.method.name).data
    if kind == "pairs" and data.format != "pairs":
        raise ValueError(f"method.name {config.method.name} trains on preference pairs: set data.format pairs and "
                         "data.path to them (docs/preference.md; `agsm shapes pairs` makes some on ShapesWorld)")
    if kind == "captions" and data.format == "pairs":
        readers = [n for n in method_names() if get_method(n).data != "captions"]  # pairs, or the prompts of pairs
        raise ValueError(f"data.format pairs holds preference pairs, for method.name {_either(readers)}; "
                         f"{config.method.name} trains on images and captions (data.format imagefolder, coco, hf)")
    if data.format == "pairs":
        from ..preference.pair_data import PairColumns, read_pairs

        columns = PairColumns(data.caption_column, data.image_0_column, data.image_1_column, data.label_column)
        return read_pairs(data.path, columns, split=data.split, builder=data.hf_builder, streaming=data.streaming,
                          max_pairs=data.max_images)
    if data.format == "hf":
        return read_hf_dataset(data.path, split=data.split, image_column=data.image_column,
                               caption_column=data.caption_column, builder=data.hf_builder, streaming=data.streaming,
                               max_images=data.max_images)
    if data.format == "coco":
        if not data.captions:
            raise ValueError("data.format coco needs data.captions, the captions json (captions_train2017.json)")
        return read_coco(data.path, data.captions)[:data.max_images]
    return read_imagefolder(data.path)[:data.max_images]


def _either(names: list[str]) -> str:
    """'dpo, inpo or spo'."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else "none"


def make_tokens(config: Config, backbone) -> SoftTokens:
    """Token sets for the backbone: N tokens (UNet), or N per block for the first `blocks` blocks (MM-DiT)."""
    count = config.tokens.num_tokens * (config.tokens.blocks if backbone.family == "mmdit" else 1)
    init = None
    if config.tokens.init == "empty_prompt":
        embeds = backbone.encode_text([""]).embeds
        if backbone.family == "mmdit":  # MM-DiT tokens live after the context embedder
            embeds = backbone.context_width_tokens(embeds)
        init = embeds[0, 0].float().cpu()  # the BOS position of the empty prompt
    per_block = config.tokens.time_table == "per_block"
    if per_block and backbone.family != "mmdit":
        raise ValueError("tokens.time_table per_block applies to MM-DiT (SD3) models, whose blocks each get their own "
                         "tokens; UNet tokens are one set, so use 'shared'")
    num_sets = get_method(config.method.name).token_sets(config.method)  # AGSM: psi+ and psi-, unless ablated
    return SoftTokens(count, backbone.token_width, num_sets=num_sets,
                      num_buckets=config.tokens.num_buckets, num_train_timesteps=backbone.num_train_timesteps,
                      init_std=config.tokens.init_std, init_tokens=init,
                      time_groups=config.tokens.blocks if per_block else 1, time_init_std=config.tokens.time_init_std)


def make_ema_tokens(config: Config, tokens: SoftTokens) -> SoftTokens:
    """The EMA tokens: a copy of the online tokens, or (method.ema_init independent, the public code) a fresh
    normal(0, init_std) draw, so that the targets' reference starts near the plain model."""
    if config.method.ema_init == "copy":
        ema = copy.deepcopy(tokens)
    else:
        ema = SoftTokens(tokens.total_tokens, tokens.width, num_sets=tokens.num_sets,
                         num_buckets=tokens.time_table.shape[0], num_train_timesteps=tokens.num_train_timesteps,
                         init_std=config.tokens.init_std,
                         time_groups=tokens.time_table.shape[1] if tokens.time_table.ndim == 3 else 1,
                         time_init_std=config.tokens.time_init_std)
    return ema.requires_grad_(False)


def make_trainable(config: Config, backbone, accelerator):
    """What this run trains (training/trainables.py), as the method's spec says: soft tokens (agsm, softrepa, dsm) or
    the backbone (dpo, inpo, spo)."""
    if get_method(config.method.name).trains == "backbone":
        from .backbone_trainable import BackboneTrainable

        return BackboneTrainable(config, backbone)
    tokens = make_tokens(config, backbone).to(accelerator.device)
    ema_tokens = make_ema_tokens(config, tokens).to(accelerator.device)
    placement = placement_for(backbone.family, config.tokens.stages, config.tokens.blocks)
    token_meta = token_metadata(backbone.describe(), placement, config.method.name, config.to_dict()["method"],
                                trained_on=backbone.trained_on)
    injector = install_tokens(backbone.denoiser, backbone.family, tokens, placement)
    return TokenTrainable(backbone, tokens, ema_tokens, injector, token_meta, config.method.ema_decay)


def build_step_batch(dataset, ids, generator, accelerator, config: Config, device, backbone):
    """The batch the method's step takes (its spec's data kind): images x captions, preference pairs, or prompts."""
    kind = get_method(config.method.name).data
    if kind == "captions":
        return build_batch(dataset, ids, generator, accelerator, config, device, encoder=backbone)
    if kind == "pairs":
        x0_w, x0_l = dataset.latents(ids)
        return PreferenceBatch(x0_w.to(device), x0_l.to(device), dataset.text(ids).to(device), dataset.captions(ids))
    from ..preference.pair_data import PairDataset

    if isinstance(dataset, PairDataset):  # SPO on preference pairs: their prompts
        return PromptBatch(dataset.text(ids).to(device), dataset.captions(ids))
    caption_ids = dataset.draw_captions(ids, generator)
    return PromptBatch(dataset.text(caption_ids).to(device), [dataset.captions[i] for i in caption_ids.tolist()])


def batch_size_of(batch) -> int:
    """The pairs (image, caption), preference pairs or prompts a step processes: for the throughput line."""
    if isinstance(batch, PairBatch):
        return batch.num_images * batch.num_captions
    return batch.num_pairs if isinstance(batch, PreferenceBatch) else batch.num_prompts


def build_batch(dataset, ids, generator, accelerator, config: Config, device, encoder=None) -> PairBatch:
    """Latents of this process's images, their captions, and the image x caption matrix.

    With method.hard_negatives > 0, `encoder` (the backbone) encodes each image's perturbed captions, which
    join the caption pool and replace that share of the image's in-batch negatives.
    """
    x0 = dataset.latents(ids).to(device)
    caption_ids = dataset.draw_captions(ids, generator)
    cond: TextCond = dataset.text(caption_ids).to(device)
    offset = 0
    if config.train.gather_captions and accelerator.num_processes > 1:
        cond = TextCond(**{k: accelerator.gather(v.contiguous()) for k, v in cond.tensors().items()})
        offset = accelerator.process_index * len(ids)
    if config.method.bradley_terry:
        index, pos = one_negative_captions(len(ids), len(cond), offset, generator)
    else:
        index, pos = in_batch_captions(len(ids), len(cond), offset)
    method = config.method
    per_image = round(method.hard_negatives * (index.shape[1] - 1))
    if per_image > 0:
        if encoder is None:
            raise ValueError("method.hard_negatives needs the backbone to encode perturbed captions; pass encoder=")
        rng = random.Random(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        texts, columns = [], []
        kinds = tuple(method.hard_negative_kinds)
        for caption_id in caption_ids.tolist():
            mine = distinct_perturbations(dataset.captions[caption_id], per_image, rng, kinds)
            columns.append([len(cond) + len(texts) + j for j in range(len(mine))])  # their columns in the pool
            texts.extend(mine)
        if texts:
            with torch.no_grad():
                extra = encoder.encode_text(texts).to(device=device, dtype=cond.embeds.dtype)
            cond = TextCond.cat([cond, extra])
            index = with_hard_negatives(index, pos, columns, generator)
    return PairBatch(x0, cond, index, pos)


def train(config: Config, resume: bool | str | Path = False, overwrite: bool = False) -> Path:
    """Train into config.train.output_dir; returns the token file (or, for dpo / inpo / spo, the tuned denoiser's
    folder). The folder is locked for the run:
    see training/run_folder.py for what --resume and --overwrite allow. `resume`: True or 'latest' continues from the
    latest checkpoint; a path, from that checkpoint (or run folder) of this run."""
    out = Path(config.train.output_dir)
    start = resume_point(resume, out)  # a --resume PATH that names no checkpoint of this run fails here
    check_report_to(config.train.report_to)  # a missing tracker package fails now, not after the model loads
    accelerator = Accelerator(mixed_precision=config.train.mixed_precision,
                              log_with=accelerate_log_with(config.train.report_to), project_dir=str(out))
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    with contextlib.ExitStack() as cleanup:
        # accelerate keeps its state per process; forget it so a later train() may pick another precision.
        cleanup.callback(AcceleratorState._reset_state, reset_partial_state=False)
        if accelerator.is_main_process:
            cleanup.callback(claim_run_folder(out, config, bool(resume), overwrite).release)
        accelerator.wait_for_everyone()
        return _train(config, accelerator, out, bool(resume), cleanup, start)


def _train(config: Config, accelerator, out: Path, resume: bool, cleanup: contextlib.ExitStack,
           start: Path | None = None) -> Path:
    tc = config.train
    records = load_records(config)  # bad data paths fail here, before the model loads
    backbone = load_backbone(config.model.path, dtype=WEIGHT_DTYPES[tc.mixed_precision],
                             resolution=config.model.resolution, variant=config.model.variant(),
                             **config.model.flow_options())
    backbone.to(accelerator.device)
    # gradient checkpointing, channels_last, compile; the steps' attention precision (training/speed.py)
    step_context = prepare_denoiser(backbone.denoiser, tc, accelerator.device, WEIGHT_DTYPES[tc.mixed_precision])
    cache_root = Path(config.data.cache_dir or out / "cache")  # the run's own, unless a shared one is named
    with accelerator.main_process_first():
        build = build_or_load_cache
        if config.data.format == "pairs":
            from ..preference.pair_data import build_or_load_pairs as build
        dataset = build(records, backbone, backbone.resolution, cache_root, cache_text=config.data.cache_text,
                        min_size=config.data.min_size, progress=accelerator.is_main_process)
    global_batch = tc.images_per_step * accelerator.num_processes
    steps_per_epoch = dataset.num_images // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"the dataset has {dataset.num_images} usable images, fewer than one global batch "
                         f"({global_batch}); lower train.images_per_step or add images")

    torch.manual_seed(tc.seed)  # initialisation (tokens, LoRA) is the same on every process
    trainable = make_trainable(config, backbone, accelerator)
    cleanup.callback(trainable.remove)
    params = list(trainable.parameters())
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=tc.restart_every, eta_min=tc.min_lr)
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
    started, pairs_done, shown_loss = time.perf_counter(), 0, "-"
    while state.step < tc.steps:
        step = state.step
        epoch, position = divmod(step, steps_per_epoch)
        order = torch.randperm(dataset.num_images, generator=torch.Generator().manual_seed(tc.seed + epoch))
        first = position * global_batch + accelerator.process_index * tc.images_per_step
        ids = order[first:first + tc.images_per_step]
        generator = step_generator(tc.seed, step, accelerator.process_index)
        batch = build_step_batch(dataset, ids, generator, accelerator, config, accelerator.device, backbone)

        # The step's attention precision (training/speed.py) over forward and backward alike.
        with step_context():
            with accelerator.autocast():
                loss, logs = step_fn(trainable.denoiser, batch, config.method, generator)
            accelerator.backward(loss)
        for p in params:  # tokens and LoRAs are small: an all-reduce of their grads replaces a DDP wrapper
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
        if tc.max_grad_norm is not None:
            accelerator.clip_grad_norm_(params, tc.max_grad_norm)
        if guard.should_skip(accelerator, state, loss, trainable, lambda: batch_files(dataset, ids)):
            optimizer.zero_grad(set_to_none=True)
            schedule.step()  # the learning rate stays a function of the step, skipped or not
        else:
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            guard.check_tokens(state, trainable)
            trainable.after_step()
        state.step += 1

        pairs_done += batch_size_of(batch) * accelerator.num_processes
        rate = pairs_done / (time.perf_counter() - started)
        logged = state.step % tc.log_every == 0 or state.step == tc.steps
        # Reading the loss waits for the device, so only logged steps do (issue 17: the step guard's two finite
        # checks, before and after the update, are a step's only host-device syncs); the bar shows the last logged
        # loss. The postfix first, without a redraw: the line update() shows then carries it.
        if logged:
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
            validator.run(state.step)
        if state.step % tc.checkpoint_every == 0 or state.step == tc.steps:
            save_checkpoint(accelerator, out, state, tc.checkpoints_total_limit, trainable.trained,
                            trainable.averaged, optimizer, schedule, getattr(trainable, "token_meta", None),
                            trainable.checkpoint_names)

    result = trainable.export(out, config, state.step, dataset.num_images) if accelerator.is_main_process else None
    if result is not None:
        log.info("wrote %s", result)
    return result if result is not None else _export_path(out, trainable, backbone)


def _export_path(out: Path, trainable, backbone) -> Path:
    """Where the main process writes the run's result (what other processes return)."""
    from ..tokens.token_file import FILE_NAME

    return out / (FILE_NAME if trainable.kind == "tokens" else backbone.denoiser_name)


def batch_files(dataset, ids) -> list[tuple[str, list[str]]]:
    """(image file, its captions) of each image in a batch: what an error about that batch should name."""
    if hasattr(dataset, "batch_files"):
        return dataset.batch_files(ids)
    return [(str(dataset.image_paths[i]), [dataset.captions[c] for c in dataset.caption_ids_of(i)])
            for i in ids.tolist()]


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
