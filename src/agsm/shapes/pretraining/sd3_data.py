"""The tiny SD3 model's training data: --n-images scenes (suite compositions held out), rendered in worker
processes and encoded once with the frozen sd15-tiny VAE (posterior mean and std, cached in WORK/latents.pt), and
their captions tokenised, all kept on the training device.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from ...utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log
from ..dataset import training_samples
from ..render import render
from . import checkpoint
from .common import to_model, tokenize
from .config import SD3Config

log = logging.getLogger(__name__)


def fingerprint(folder: Path) -> str:
    """A short hash of the files (names and bytes) directly in `folder`."""
    digest = hashlib.sha256()
    for f in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def _render_chunk(scenes) -> np.ndarray:
    return np.stack([np.asarray(render(scene)) for scene in scenes])  # [n, 64, 64, 3] uint8


def _render_all(samples, chunk: int) -> list[np.ndarray]:
    """Rendered in worker processes (about 0.3 ms an image on one core): the GPU waits for no CPU work."""
    chunks = [[s.scene for s in samples[i : i + chunk]] for i in range(0, len(samples), chunk)]
    workers = min(len(chunks), os.cpu_count() or 1, 16)
    if workers < 2:
        return [_render_chunk(c) for c in chunks]
    from multiprocessing import get_context

    with get_context("fork").Pool(workers) as pool:  # children only draw with PIL: no CUDA, no torch threads
        return list(progress_bar(pool.imap(_render_chunk, chunks), total=len(chunks), desc="render", unit="chunk"))


@torch.no_grad()
def encode_dataset(cfg: SD3Config, vae, work: Path, chunk: int = 1024) -> dict:
    """Posterior mean and std [N, 4, 8, 8] of every training image under the frozen VAE, and the captions; cached in
    WORK/latents.pt under a key of what they depend on (image count, seed, the VAE's files)."""
    key = {"n_images": cfg.n_images, "seed": cfg.seed, "vae": fingerprint(Path(cfg.vae))}
    path = work / "latents.pt"
    if path.exists():
        cache = torch.load(path, weights_only=True)
        if cache["key"] == key:
            return cache
        log.info("cached latents were made for %s, not %s: encoding again", cache["key"], key)
    t0 = time.time()
    samples = training_samples(cfg.n_images, cfg.seed)
    pixels = _render_all(samples, chunk)
    vae = vae.to(cfg.device)
    means, stds = [], []
    for block in pixels:
        posterior = vae.encode(to_model(torch.from_numpy(block)).to(cfg.device)).latent_dist
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
    cache = {"key": key, "mean": torch.cat(means), "std": torch.cat(stds), "captions": [s.prompt for s in samples],
             "wall": time.time() - t0}
    checkpoint.save_atomic(cache, path)
    log.info("rendered and encoded %d training images in %.0f s", len(samples), cache["wall"])
    return cache


def device_data(cfg: SD3Config, cache: dict, vae, tokenizer) -> dict:
    """What draw_batch reads, on cfg.device: latents, both encoders' token ids (both tokenizers are one), the
    empty caption's ids, and the VAE's latent scale and shift."""
    ids = tokenize(tokenizer, cache["captions"]).to(cfg.device)  # [N, L]
    empty = tokenize(tokenizer, [""]).to(cfg.device)  # [1, L]
    return {"mean": cache["mean"].to(cfg.device), "std": cache["std"].to(cfg.device), "ids": [ids, ids],
            "empty_ids": [empty, empty], "scale": float(vae.config.scaling_factor),
            "shift": float(vae.config.shift_factor)}


def prepare_run(cfg) -> tuple[Path, object, dict, object, dict]:
    """How the recipes on the frozen sd15-tiny VAE (sd3, sdxl) start: torch threads set, WORK/config.json written;
    returns WORK, the VAE, the encoded training set, the tokenizer both text encoders share (end-of-text with the
    largest id, where CLIP's projection pools) and what their batches read on the device."""
    from dataclasses import asdict

    from .. import tiny_models as tm

    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    vae = tm.load_frozen_vae(cfg.vae)
    cache = encode_dataset(cfg, vae, work)
    tokenizer = tm.build_sd3_tokenizer()
    return work, vae, cache, tokenizer, device_data(cfg, cache, vae, tokenizer)
