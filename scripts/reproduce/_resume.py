"""When the reproduction scripts skip a stage, and when they start one afresh (the policy _common.py's stages use).

A stage is skipped when its output is complete and made from the same inputs: a training run whose last checkpoint
is at train.steps with a matching config.yaml (the differences `agsm train --resume` accepts aside), an evaluation
whose results.json names the same model, tokens, variant, seed and precision and holds every number asked for.
agsm's own records name the token file or tuned denoiser by path, not by content, so a run trained further after an
evaluation would leave that evaluation looking finished. Each script therefore keeps OUT/stage_inputs.json: per
stage folder, the size and modification time of every file it read (token files, tuned denoisers, LoRAs). When
those changed, the stage's folder is started afresh (agsm's --overwrite) instead of being skipped or resumed.
"""
from __future__ import annotations

import json
from pathlib import Path


class InputRecord:
    """OUT/stage_inputs.json: {stage folder: fingerprint of the files it was made from}."""

    def __init__(self, out: Path):
        self.path = Path(out) / "stage_inputs.json"
        self.held = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def changed(self, folder: Path, inputs: list) -> bool:
        """True when the folder was made from other files than `inputs` are now (never for an unrecorded one)."""
        held = self.held.get(str(folder))
        return held is not None and held != inputs

    def remember(self, folder: Path, inputs: list) -> None:
        from agsm.utils.atomic_files import write_json

        self.held[str(folder)] = inputs
        write_json(self.path, self.held)


def fingerprint(*paths) -> list:
    """[path, size, mtime_ns] of every file under the given files or folders (None skipped), sorted."""
    rows = []
    for given in paths:
        if not given:
            continue
        given = Path(given)
        files = sorted(p for p in given.rglob("*") if p.is_file()) if given.is_dir() else [given]
        for path in files:
            stat = path.stat()
            rows.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return rows


def finished_run(out: Path, config) -> Path | None:
    """What a finished run in `out` exported, when it ran to train.steps with these settings; else None."""
    import yaml
    from agsm.tokens.token_file import FILE_NAME
    from agsm.training.checkpoint import checkpoint_step, latest_checkpoint
    from agsm.training.config import from_dict
    from agsm.training.run_folder import CONFIG_NAME, RESUMABLE_CHANGES, config_differences

    last = latest_checkpoint(out)
    if last is None or checkpoint_step(last) < config.train.steps or not (out / CONFIG_NAME).is_file():
        return None
    saved = from_dict(yaml.safe_load((out / CONFIG_NAME).read_text()) or {}).to_dict()
    if set(config_differences(saved, config.to_dict())) - RESUMABLE_CHANGES:
        return None  # agsm train names each difference and refuses
    tuned = out / "tuned.json"  # a preference run: its tuned denoiser
    if tuned.is_file():
        return Path(json.loads(tuned.read_text())["files"]["denoiser"])
    return out / FILE_NAME if (out / FILE_NAME).is_file() else None


def finished_eval(out: Path, args, model, tokens=None, variant=None, complete=lambda results: True) -> dict | None:
    """results.json of a finished evaluation of the same model, tokens, variant, seed and precision for which
    `complete(results)` holds, or None."""
    from agsm.eval.generation import run_config

    path = Path(out) / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    wanted = run_config(model, tokens, seed=args.seed, device=args.device, dtype=args.dtype, variant=variant)
    wanted.pop("uncond_tokens")  # the scripts sample with agsm's default, psi+ in both branches
    same = all(results.get("config", {}).get(key) == value for key, value in wanted.items())
    return results if same and complete(results) else None
