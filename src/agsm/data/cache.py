"""Encode-once cache: images through the VAE and captions through the text encoders, a single time.

`build_or_load_cache(records, encoder, resolution, cache_root)` returns an `EncodedDataset` stored in
`cache_root/<key>`. The key hashes everything the encoded values depend on (encoder fingerprint,
resolution, dtype, cache_text, min_size, and the data: each image file's path, size, mtime and captions, an
in-memory image's bytes, or a dataset's fingerprint), so a changed input gives a new folder and an unchanged
one is loaded without running the encoders.

`records` is a list of `Record`s or a `RecordSource` (a streamed dataset): either way the builder reads the
records once, in order, one batch ahead of the encoder, and keeps only names and captions, so a stream's
images are never all in memory.

A build writes into a temporary sibling folder, writes `index.json` last and renames the folder into
place, so an interrupted build never leaves a folder that looks finished; the temporary folders of builds
whose process died are removed at the next build. Processes of one machine that reach an unbuilt cache together
(the ranks of a multi-GPU run) build it once: the others wait for it (data/builders.py).

Random flips (random_flip=True, data.random_flip): each image is also encoded mirrored, stored as a second latent
row ("flipped") beside its own, and the training step picks one of the two per image. Mirroring the latent instead
would be cheaper but is not the latent of the mirrored image: a VAE's encoder is not equivariant to flips in general
(its convolutions and the latent channels' meaning are not mirror-symmetric), so the flipped image is encoded. The
mirrored image is the preprocessed square flipped left-right, as a flip after the crop in diffusers' scripts. With
random_flip and center_crop at their defaults the cache key, the shards and so the training run are exactly what
they were before these options existed. A finished folder whose index or shards no longer match
their recorded sizes and hashes (a damaged disk, a truncated copy) is rebuilt, with a warning.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from ..utils.progress import progress as progress_bar

from ..backbones.base import Encoder
from .builders import OWNER_FILE, one_builder, remove_abandoned_builds, start_build
from .caption_length import long_captions, warn_long_captions
from .dataset import EncodedDataset
from .errors import DamagedCacheError, DataError
from .images import TOO_SMALL, UNREADABLE, load_image, shorter_side
from .size_advice import too_small_error
from .shards import ShardWriter
from .sources import Record, RecordSource

log = logging.getLogger("agsm.data")

FORMAT = 1  # bump when the folder layout changes, so old caches are not misread
FLIPPED = "flipped"  # the shard key of the mirrored images' latents (random_flip)


def build_or_load_cache(records: list[Record] | RecordSource, encoder: Encoder, resolution: int,
                        cache_root: str | Path, *,
                        batch_size: int = 16, shard_size: int = 1024, cache_text: bool = True,
                        min_size: int | None = None, dtype: torch.dtype = torch.float32,
                        progress: bool = True, center_crop: bool = True,
                        random_flip: bool = False) -> EncodedDataset:
    """The cached encoding of `records` at `resolution`, built on first use.

    Images whose shorter side is below `min_size` (default resolution // 2) or that cannot be decoded
    are skipped and counted in one log warning. With cache_text=False captions are encoded on demand.
    center_crop False resizes whole images to the square (data/images.py); random_flip True also stores each
    image's mirrored latents (see the module docstring).
    """
    if isinstance(records, list) and not records:
        raise DataError("no records to encode; read a dataset with read_imagefolder, read_coco or read_hf_dataset "
                        "first")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype}")
    min_size = resolution // 2 if min_size is None else min_size
    inputs = {"format": FORMAT, "encoder": encoder.fingerprint(), "resolution": resolution,
              "dtype": str(dtype).removeprefix("torch."), "cache_text": cache_text, "min_size": min_size,
              "content": content_hash(records)}
    # Only when not at their defaults: a default cache keeps the key (and so the entry) it had before them.
    inputs.update({k: v for k, v in (("center_crop", center_crop), ("random_flip", random_flip))
                   if v != (k == "center_crop")})
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    cache_root = Path(cache_root)
    folder = cache_root / key
    dataset = _finished(folder, encoder, remove_damaged=False)
    if dataset is not None:
        return dataset
    cache_root.mkdir(parents=True, exist_ok=True)
    with one_builder(cache_root):
        dataset = _finished(folder, encoder, remove_damaged=True)  # built by another process while this one waited
        if dataset is not None:
            return dataset
        remove_abandoned_builds(cache_root)
        tmp = start_build(cache_root, key)
        try:
            index = _build(records, encoder, resolution, min_size, dtype, cache_text, batch_size, shard_size,
                           progress, tmp, center_crop, random_flip)
            index.update(key=key, inputs=inputs)
            warn_long_captions(index["long_captions"])
            # index.json is the completion mark: written last, and only inside the temporary folder.
            (tmp / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
            (tmp / OWNER_FILE).unlink()
            _publish(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return EncodedDataset(folder, encoder)


def _finished(folder: Path, encoder: Encoder, remove_damaged: bool) -> EncodedDataset | None:
    """The finished cache in `folder`, or None: not built, or damaged (then deleted, when `remove_damaged`)."""
    if not (folder / "index.json").is_file():
        return None
    try:
        dataset = EncodedDataset(folder, encoder)
    except DamagedCacheError as exc:
        if remove_damaged:
            log.warning("the cache %s is damaged (%s); rebuilding it", folder, exc.detail)
            shutil.rmtree(folder)
        return None
    log.info("using the cached encoding in %s", folder)
    warn_long_captions(dataset.index.get("long_captions"))
    return dataset


def content_hash(records: list[Record] | RecordSource) -> str:
    """Hash of the data: for a file, its path, size, mtime and captions; for an in-memory image, its bytes and
    captions; for a record source (a dataset), its fingerprint."""
    if not isinstance(records, list):
        return "source-" + records.fingerprint()
    h = hashlib.sha256()
    for r in records:
        if r.image is not None:
            h.update(json.dumps(["memory", str(r.path), image_digest(r.image), list(r.captions)]).encode())
        else:
            try:
                st = r.path.stat()
                stamp = [st.st_size, st.st_mtime_ns]
            except OSError:
                stamp = None  # a vanished file is skipped as unreadable; hash that state too
            h.update(json.dumps([str(r.path.resolve()), stamp, list(r.captions)]).encode())
        h.update(b"\n")
    return h.hexdigest()


def image_digest(image) -> str:
    """SHA-256 of an in-memory image: an encoded file's bytes, or a decoded PIL image's mode, size and pixels."""
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()
    h = hashlib.sha256(f"{image.mode} {image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _build(records, encoder, resolution, min_size, dtype, cache_text, batch_size, shard_size, progress,
           folder: Path, center_crop: bool = True, random_flip: bool = False) -> dict:
    """Write the shards into `folder`; returns the index (without key and inputs)."""
    latents = ShardWriter(folder, "latents", shard_size)
    kept, skipped, seen, small_sides = _encode_images(records, encoder, resolution, min_size, batch_size, dtype,
                                                      latents, progress, center_crop, random_flip)
    shard_list = latents.close()
    _warn_skipped(skipped, seen, min_size)
    if not seen:
        raise DataError("the dataset yielded no records; check its split, or data.max_images")
    if not kept:
        if skipped[TOO_SMALL]:
            raise too_small_error(seen, len(skipped[UNREADABLE]), small_sides, min_size, resolution)
        raise DataError(f"none of the {seen} images could be used (all {seen} unreadable); check the image files")

    captions, image_captions = [], []
    for _, image_caps in kept:  # caption ids of an image are contiguous, in record order
        image_captions.append(list(range(len(captions), len(captions) + len(image_caps))))
        captions.extend(image_caps)
    text_shards = []
    long = long_captions(captions, encoder)
    if cache_text:
        text_shards = _encode_text(captions, encoder, batch_size, shard_size, dtype, folder, progress)
    return {"format": FORMAT, "images": [str(name) for name, _ in kept], "captions": captions,
            "image_captions": image_captions, "latent_shape": latents.row_shapes["latents"],
            "skipped": {k: [str(p) for p in v] for k, v in skipped.items()},
            "latent_shards": shard_list, "text_shards": text_shards, "long_captions": long}


def _encode_images(records, encoder, resolution, min_size, batch_size, dtype, writer: ShardWriter, progress,
                   center_crop: bool = True, random_flip: bool = False):
    """Decode in threads (PIL releases the GIL) one batch ahead of the encoder, reading the records once.

    Returns (kept, skipped, seen, small_sides): (name, captions) of each encoded image in order, the names of
    skipped images by reason, how many records were read, and the shorter sides of the too-small images (for the
    error that says which size would fit). Only the current and the next batch's images are held."""
    kept: list[tuple[Path, tuple[str, ...]]] = []
    small_sides: list[int] = []
    skipped: dict[str, list[Path]] = {UNREADABLE: [], TOO_SMALL: []}
    seen = 0
    device = getattr(encoder, "device", None)
    records_iter = iter(records)
    next_batch = lambda: list(itertools.islice(records_iter, batch_size))  # noqa: E731
    total = len(records) if isinstance(records, list) else getattr(records, "size", None)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
            progress_bar(total=total, desc="encoding images", unit="img", disable=not progress) as bar:
        submit = lambda batch: [pool.submit(load_image, r.image_source, resolution, min_size,  # noqa: E731
                                            center_crop) for r in batch]
        batch = next_batch()
        pending = submit(batch)
        while batch:
            loaded = [f.result() for f in pending]
            upcoming = next_batch()
            pending = submit(upcoming)
            seen += len(batch)
            pixels = []
            for record, x in zip(batch, loaded):
                if isinstance(x, str):
                    skipped[x].append(record.path)
                    if x == TOO_SMALL:
                        small_sides.append(shorter_side(record.image_source))
                else:
                    pixels.append(x)
                    kept.append((record.path, record.captions))
            if pixels:
                x = torch.stack(pixels)
                with torch.no_grad():
                    z = encoder.encode_images(x if device is None else x.to(device))
                if z.shape[0] != len(pixels):
                    raise RuntimeError(f"encoder.encode_images returned {z.shape[0]} latents for {len(pixels)} "
                                    "images; it must return one latent per image")
                rows = {"latents": z.to("cpu", dtype)}
                if random_flip:  # a call of its own: the unflipped latents stay those of a cache without flips
                    with torch.no_grad():
                        flipped = encoder.encode_images((x if device is None else x.to(device)).flip(-1))
                    rows[FLIPPED] = flipped.to("cpu", dtype)
                writer.add(rows)
            bar.update(len(batch))
            batch = upcoming
    return kept, skipped, seen, small_sides


def _encode_text(captions, encoder, batch_size, shard_size, dtype, folder: Path, progress) -> list[dict]:
    writer = ShardWriter(folder, "text", shard_size)
    for i in progress_bar(range(0, len(captions), batch_size), desc="encoding captions", unit="batch",
                  disable=not progress):
        chunk = captions[i:i + batch_size]
        with torch.no_grad():
            cond = encoder.encode_text(chunk)
        if len(cond) != len(chunk):
            raise RuntimeError(f"encoder.encode_text returned {len(cond)} rows for {len(chunk)} captions; "
                            "it must return one row per caption")
        writer.add({k: v.to("cpu", dtype if v.is_floating_point() else v.dtype)
                    for k, v in cond.tensors().items()})
    return writer.close()


def _warn_skipped(skipped: dict[str, list[Path]], total: int, min_size: int) -> None:
    bad, small = skipped[UNREADABLE], skipped[TOO_SMALL]
    if not bad and not small:
        return
    names = lambda paths: ", ".join(p.name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")  # noqa: E731
    parts = []
    if bad:
        parts.append(f"{len(bad)} unreadable ({names(bad)})")
    if small:
        parts.append(f"{len(small)} smaller than {min_size} px on the shorter side ({names(small)})")
    log.warning("skipped %d of %d images: %s", len(bad) + len(small), total, "; ".join(parts))


def _publish(tmp: Path, folder: Path) -> None:
    """Move the finished build into place; another process may have finished the same key first."""
    try:
        os.replace(tmp, folder)
    except OSError:
        if (folder / "index.json").is_file():
            return  # a concurrent build of the same inputs won; its result is equivalent
        shutil.rmtree(folder)  # a leftover folder without index.json is an unfinished cache
        os.replace(tmp, folder)
