"""What one training step takes: the run's records, and each step's batch of the kind the method's spec names.

captions: a PairBatch, this process's images x the batch's captions (gathered from every process with
train.gather_captions), with hard negatives (perturbed own captions) encoded per step; pairs: a PreferenceBatch of
preferred and dispreferred latents; prompts: a PromptBatch (SPO samples its own images). Every draw comes from the
micro-batch's generator (step_generator: seeded by seed, micro-batch and process), so a resumed run draws what the
uninterrupted run would have.

Micro-batches are counted over the whole run: with train.gradient_accumulation_steps N, update s takes micro-batches
s N .. s N + N - 1, each with its own images (micro_batch_ids) and generator. With N = 1 a micro-batch is a step, as it
always was; with N > 1 the run sees the micro-batches that N times as many steps with N = 1 would see.
"""
from __future__ import annotations

import random

import torch

from ..backbones.base import TextCond
from ..data import read_coco, read_hf_dataset, read_imagefolder
from ..data.perturb import distinct_perturbations
from ..objectives import PairBatch, get_method, method_names
from ..objectives.pairs import in_batch_captions, one_negative_captions, with_hard_negatives
from ..objectives.preference_batch import PreferenceBatch, PromptBatch
from .config import Config


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of micro-batch `step` (the step itself without accumulation) on process `rank`."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 7_919 + rank)


def micro_batch_ids(num_images: int, seed: int, micro: int, per_process: int, rank: int,
                    num_processes: int) -> torch.Tensor:
    """This process's images of micro-batch `micro`: epoch e is a permutation of the data seeded by seed + e, cut
    into global batches of per_process x num_processes images (rank-major); an incomplete last batch is dropped."""
    global_batch = per_process * num_processes
    epoch, position = divmod(micro, num_images // global_batch)
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed + epoch))
    first = position * global_batch + rank * per_process
    return order[first:first + per_process]


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
            from ..data.formats import is_imagefolder

            folder = (f"; data.path {data.path} is an image folder (it holds metadata.jsonl): set --data.format "
                      "imagefolder or leave data.format out") if is_imagefolder(data.path) else ""
            raise ValueError("data.format coco needs data.captions, the captions json (captions_train2017.json)"
                             + folder)
        return read_coco(data.path, data.captions)[:data.max_images]
    return read_imagefolder(data.path)[:data.max_images]


def _either(names: list[str]) -> str:
    """'dpo, inpo or spo'."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else "none"


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
    # data.random_flip: one draw per image from the step's generator, so a resumed run flips what the
    # uninterrupted one did; without it the generator is not touched here and the run is what it always was.
    flip = torch.rand(len(ids), generator=generator) < 0.5 if config.data.random_flip else None
    x0 = dataset.latents(ids, flip).to(device)
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


def batch_files(dataset, ids) -> list[tuple[str, list[str]]]:
    """(image file, its captions) of each image in a batch: what an error about that batch should name."""
    if hasattr(dataset, "batch_files"):
        return dataset.batch_files(ids)
    return [(str(dataset.image_paths[i]), [dataset.captions[c] for c in dataset.caption_ids_of(i)])
            for i in ids.tolist()]
