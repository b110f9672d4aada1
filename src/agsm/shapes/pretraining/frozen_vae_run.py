"""The one run of the architectures trained on the frozen sd15-tiny VAE's latents (sd3, sdxl): prepare the data
(sd3_data.prepare_run), train the architecture's recipe in the shared loop, export the EMA weights as its stock
pipeline with train_info.json.

The architecture brings its config class, its recipe and its pipeline; what train_info.json records about every
such run (command, seed, steps, wall time, device, config, parameter counts, loss curve, library versions) is
written here, the architecture adding the entries only it has (its conditioning, its latent factors).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from . import loop
from .common import command_line, default_work_dir, library_versions
from .sd3_data import prepare_run

log = logging.getLogger(__name__)


def pretrain(config_class, make_recipe, export, out_dir: str, steps: int, seed: int, work_dir: str | None,
             command: str | None, options: dict) -> Path:
    """Train (or resume) and write the pipeline to `out_dir`; returns it.

    `config_class(out_dir=..., work_dir=..., steps=..., seed=..., **options)` is the run's config,
    `make_recipe(cfg, data, tokenizer, vae)` its loop.Recipe and `export(cfg, parts, vae, tokenizer, data, walls,
    losses, command)` writes the pipeline (see save_pipeline). Without `command`, the process's own command line is
    recorded.
    """
    cfg = config_class(out_dir=str(out_dir), work_dir=default_work_dir(out_dir, work_dir), steps=steps, seed=seed,
                       **options)
    work, vae, cache, tokenizer, data = prepare_run(cfg)
    trained = loop.train(make_recipe(cfg, data, tokenizer, vae), work)
    out = export(cfg, trained.result, vae, tokenizer, data, {"data": cache["wall"], "train": trained.wall},
                 trained.losses, command_line(command))
    log.info("saved %s", out)
    return out


def device_name(device: str) -> str:
    """The GPU's name, or the CPU with the threads torch uses, as train_info.json records where a run trained."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores"


def save_pipeline(pipe, cfg, parts: dict, vae, walls: dict, losses: list, command: str, described: dict) -> Path:
    """Save `pipe` (built on the exported `parts` and the frozen `vae`) in cfg.out_dir with train_info.json: what
    every run records, the architecture's own entries `described`, then the loss curve and library versions.
    Removes a suite_scores.json that scored earlier weights. Returns the folder."""
    out = Path(cfg.out_dir)
    stale = out / "suite_scores.json"
    if stale.exists():  # scores of the previous weights
        stale.unlink()
        log.info("removed %s (it scored the previous weights)", stale)
    pipe.save_pretrained(out, safe_serialization=True)
    info = {
        "command": command,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_seconds": {k: round(v, 1) for k, v in walls.items()} | {"total": round(sum(walls.values()), 1)},
        "seconds_per_step": round(walls["train"] / cfg.steps, 4),  # over the whole run, compiling included
        "device": device_name(cfg.device),
        "config": asdict(cfg),
        "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        | {"vae (frozen, from sd15-tiny)": sum(p.numel() for p in vae.parameters())},
        **described,
        "loss_curve": losses,
        "versions": library_versions(),
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
