"""Token files from a run: the end-of-training export, and `agsm export` from any checkpoint.

    agsm export --run runs/sd15-agsm --checkpoint checkpoint-4000 --weights ema --out picked/

A run trains two token modules: the online tokens (what the optimiser moves) and their moving average (EMA),
which gives AGSM its targets. At the end of a run, `train.export_tokens` picks the one written as the run's
`soft_tokens.safetensors`; the other is written beside it as `soft_tokens_ema.safetensors` or
`soft_tokens_online.safetensors`. Each file's metadata says which it holds (`weights`).

Checkpoints store the token file metadata (backbone sizes, placement, method and settings) in their
train_state.json, so exporting one needs neither the model nor the data. Older checkpoints, written
before they kept it, get it from the run's config.yaml and the backbone it names.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import checkpoint_files
from .checkpoint import find_checkpoint
from ..tokens.token_file import FILE_NAME, save_tokens
from ..tokens import SoftTokens

log = logging.getLogger("agsm.export")
WEIGHTS = ("online", "ema")
# Where each kind of weights goes when it is not the run's main soft_tokens.safetensors.
SIDE_FILE = {"online": "soft_tokens_online.safetensors", "ema": "soft_tokens_ema.safetensors"}


def token_metadata(backbone_info: dict, placement: dict, method: str, settings: dict,
                   trained_on: dict | None = None) -> dict:
    """What a token file records besides the tensors and the step: stored in every checkpoint. `trained_on`: the
    backbone's model folder, variant and denoiser hash (backbones.variants.trained_on)."""
    meta = {"backbone": dict(backbone_info), "placement": dict(placement), "method": method,
            "settings": dict(settings)}
    if trained_on is not None:
        meta["trained_on"] = dict(trained_on)
    return meta


def export_run(out: Path, tokens: SoftTokens, ema_tokens: SoftTokens, token_meta: dict, step: int,
               main: str = "online") -> Path:
    """Write `main`'s tokens as out/soft_tokens.safetensors and the other's beside it; returns the main file."""
    _check_weights(main, "train.export_tokens")
    out = Path(out)
    by_kind = {"online": tokens, "ema": ema_tokens}
    other = "ema" if main == "online" else "online"
    path = _save(out / FILE_NAME, by_kind[main], token_meta, step, main)
    _save(out / SIDE_FILE[other], by_kind[other], token_meta, step, other)
    # The side file of the other choice would be a duplicate of the main file, possibly from an older step.
    (out / SIDE_FILE[main]).unlink(missing_ok=True)
    return path


def export_checkpoint(run: str | Path, out: str | Path, checkpoint: str = "latest",
                      weights: str | None = None) -> Path:
    """Write out/soft_tokens.safetensors from one checkpoint of the run in `run`; returns its path.

    `weights` None takes the run's train.export_tokens (config.yaml), so a checkpoint exports as the run would.
    """
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"--run {run} does not exist; give a run folder (the train.output_dir of `agsm train`)")
    folder = find_checkpoint(run, checkpoint)
    weights = weights or _run_config_weights(run)
    _check_weights(weights, "--weights")
    tensors, meta, _, _ = checkpoint_files.read(folder, 0)
    if meta.get("trained", "tokens") != "tokens":
        raise checkpoint_files.CheckpointError(f"{folder} is a checkpoint of a run that tunes the backbone (method dpo, "
                                          "inpo or spo), not soft tokens; such a run writes its tuned denoiser (and "
                                          "LoRA) into its folder when it finishes: train it to the end")
    token_meta = meta.get("token_file") or _metadata_from_run(run, folder)
    prefix = {"online": "tokens.", "ema": "ema."}[weights]
    tokens = _tokens_from_state(tensors, prefix, int(token_meta["backbone"]["num_train_timesteps"]), folder)
    Path(out).mkdir(parents=True, exist_ok=True)  # only now: a refused export leaves no empty folder behind
    path = _save(Path(out) / FILE_NAME, tokens, token_meta, int(meta["step"]), weights)
    from .model_card import write_model_card

    write_model_card(out, _run_config(run))  # the card travels with the file, as after a training run
    log.info("wrote %s and its model card (%s tokens of %s, step %s)", path, weights, folder, meta["step"])
    return path


def _save(path: Path, tokens: SoftTokens, token_meta: dict, step: int, weights: str) -> Path:
    return save_tokens(path, tokens, token_meta["backbone"], token_meta["placement"], token_meta["method"],
                       token_meta["settings"], step, weights=weights, trained_on=token_meta.get("trained_on"))


def _check_weights(value: str, option: str) -> None:
    if value not in WEIGHTS:
        raise ValueError(f"{option} {value!r} is not one of 'online' (the trained tokens) or 'ema' (their moving "
                         "average)")


def _tokens_from_state(tensors: dict[str, torch.Tensor], prefix: str, num_train_timesteps: int,
                       folder: Path) -> SoftTokens:
    """The SoftTokens module stored under `prefix` (tokens. or ema.) in a checkpoint's train_state tensors."""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if set(state) != {"sets", "time_table"}:
        raise checkpoint_files.CheckpointError(f"{folder} holds no {prefix.rstrip('.')} tokens (found {sorted(state)}); "
                                          "it is damaged: pick another checkpoint")
    sets, table = state["sets"], state["time_table"]
    tokens = SoftTokens(sets.shape[1], sets.shape[2], num_sets=sets.shape[0], num_buckets=table.shape[0],
                        num_train_timesteps=num_train_timesteps, time_groups=table.shape[1] if table.ndim == 3 else 1)
    tokens.load_state_dict(state, strict=True)
    return tokens.requires_grad_(False)


def _run_config(run: Path):
    from .config import load_config
    from .run_folder import CONFIG_NAME

    path = run / CONFIG_NAME
    return load_config(path) if path.is_file() else None


def _run_config_weights(run: Path) -> str:
    config = _run_config(run)
    return config.train.export_tokens if config is not None else "online"


def _metadata_from_run(run: Path, folder: Path) -> dict:
    """Token metadata of a checkpoint that predates storing it: from config.yaml and the backbone it names."""
    from ..backbones.factory import load_backbone
    from ..tokens import placement_for

    config = _run_config(run)
    if config is None:
        raise checkpoint_files.CheckpointError(f"{folder} was written by an older agsm that kept no token metadata in "
                                          f"checkpoints, and {run} has no config.yaml to read it from")
    log.info("%s keeps no token metadata (an older checkpoint): reading it from %s", folder, config.model.path)
    backbone = load_backbone(config.model.source(), resolution=config.model.resolution,
                             variant=config.model.backbone_variant(),
                             **config.model.flow_options())
    placement = placement_for(backbone.family, config.tokens.stages, config.tokens.blocks)
    return token_metadata(backbone.describe(), placement, config.method.name, config.to_dict()["method"],
                          trained_on=backbone.trained_on)
