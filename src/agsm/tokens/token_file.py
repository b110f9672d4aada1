"""`soft_tokens.safetensors`: the token tensors plus metadata saying what they were made for, and where a name
points to one (`locate_token_file`: a local file or folder, else a Hugging Face Hub repo id).

Keys: psi_pos [N, D], psi_neg [N, D] (when trained), time_table [buckets, D] (per block: [buckets, blocks, D]).
Metadata (strings):
format_version, family, architecture, token_width, num_train_timesteps, the placement (UNet: stages,
e.g. "down,mid"; MM-DiT: blocks, the number of leading blocks, which split the N tokens evenly),
num_tokens (N: every token of a set, all blocks together, SoftTokens.total_tokens; the config's tokens.num_tokens
is per block), num_buckets, method, settings (JSON), step, weights (online or ema: the
trained tokens or their moving average; absent in older files), trained_on (JSON: the model folder's name, the
denoiser and LoRA it was swapped for, and the denoiser's content hash, agsm.backbones.variants; absent in older
files), imported_from (JSON: the source files and their SHA-256, for tokens that `agsm import-tokens` read from
another code's files; absent otherwise), and digest (SHA-256 of the
metadata and tensors, tokens/checks.py). Non-finite tokens are never written, and a file that is non-finite,
inconsistent or changed after writing is refused on load.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from ..utils import atomic_files
from ..utils.counts import count
from .checks import check_token_file, digest
from . import SoftTokens

FORMAT_VERSION = "1"
FILE_NAME = "soft_tokens.safetensors"


def save_tokens(path: str | Path, tokens: SoftTokens, backbone_info: dict, placement: dict, method: str,
                settings: dict, step: int, weights: str | None = None, trained_on: dict | None = None,
                imported_from: dict | None = None) -> Path:
    """Write atomically (temp file then rename) so a crash never leaves a truncated token file. `weights`
    ('online' or 'ema') records which of the run's token modules these are; `trained_on` which backbone
    (variants.trained_on); `imported_from` the files tokens trained elsewhere were read from (authors_tokens.py)."""
    path = Path(path)
    tensors = {"psi_pos": tokens.sets[0], "time_table": tokens.time_table}
    if tokens.num_sets > 1:
        tensors["psi_neg"] = tokens.sets[1]
    meta = {"format_version": FORMAT_VERSION, **{k: str(v) for k, v in backbone_info.items()},
            **{k: str(v) for k, v in placement.items()}, "num_tokens": str(tokens.total_tokens),
            "num_buckets": str(tokens.time_table.shape[0]), "method": method,
            "settings": json.dumps(settings, sort_keys=True), "step": str(step)}
    if weights is not None:
        meta["weights"] = weights
    if trained_on is not None:
        meta["trained_on"] = json.dumps(trained_on, sort_keys=True)
    if imported_from is not None:
        meta["imported_from"] = json.dumps(imported_from, sort_keys=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    bad = sorted(k for k, v in tensors.items() if not bool(torch.isfinite(v).all()))
    if bad:
        raise ValueError(f"refusing to write {path}: {', '.join(bad)} hold non-finite values (NaN or inf)")
    meta["digest"] = digest(tensors, meta)
    return atomic_files.write_bytes(path, save(tensors, metadata=meta))


def resolve_token_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        # the usual miss is a run or one of its checkpoints, whose tokens `agsm export` writes: say so, with the command
        hint = _run_folder_hint(path.parent if path.suffix == ".safetensors" else path)
        raise FileNotFoundError(hint or f"no soft token file at {path}; pass a {FILE_NAME} file or the folder "
                                "holding it")
    return path


# What marks a training checkpoint and a run folder. tokens/ may not import training/ (tests/test_import_direction.py),
# so these restate training/checkpoint_files.py's STATE, training/checkpoint.py's checkpoint-N names and
# training/run_folder.py's CONFIG_NAME; tests/test_token_errors.py checks they still agree.
CHECKPOINT_STATE, RUN_CONFIG, CHECKPOINTS = "train_state.json", "config.yaml", "checkpoints"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def _export_command(run: Path, checkpoint: str) -> str:
    """The `agsm export` line (agsm/cli.py: --run, --checkpoint, --out) that writes `checkpoint`'s tokens, and where
    they land; quoted for a shell, so it can be pasted as is."""
    out = shlex.quote(str(run / f"export-{checkpoint}"))
    return f"`agsm export --run {shlex.quote(str(run))} --checkpoint {checkpoint} --out {out}`, then pass {out}"


def _latest_checkpoint(run: Path) -> str | None:
    """The name of the run's newest checkpoint (checkpoint-N with the largest N), None before the first."""
    folder = run / CHECKPOINTS
    steps = [int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ())
             if p.is_dir() and (m := _CHECKPOINT_NAME.fullmatch(p.name))]
    return f"checkpoint-{max(steps)}" if steps else None


def _run_folder_hint(folder: Path) -> str | None:
    """Why `folder` (a checkpoint, or a run without its token file) holds no token file, and the `agsm export`
    command that writes one; None for any other folder."""
    if (folder / CHECKPOINT_STATE).is_file():
        what = f"{folder} is a training checkpoint (it holds {CHECKPOINT_STATE}), not a soft token file"
        if folder.parent.name == CHECKPOINTS and _CHECKPOINT_NAME.fullmatch(folder.name):
            return f"{what}; write its tokens with {_export_command(folder.parent.parent, folder.name)}"
        return (f"{what}, and it sits outside a run folder: put it back as <run>/checkpoints/checkpoint-N, then "
                "write its tokens with `agsm export --run <run> --checkpoint checkpoint-N --out <folder>`")
    if (folder / CHECKPOINTS).is_dir() or (folder / RUN_CONFIG).is_file():
        what = f"{folder} is a run folder without {FILE_NAME} (a run writes it when its training finishes)"
        latest = _latest_checkpoint(folder)
        if latest is None:
            return (f"{what}, and it has no checkpoint yet: train it until it writes one (train.checkpoint_every) or "
                    "finishes, then export it")
        return f"{what}; write the tokens of its latest checkpoint with {_export_command(folder, latest)}"
    return None


def _not_a_token_file(path: Path, meta: dict, names: list[str]) -> str:
    """One line for a safetensors file that is not a token file (a UNet's weights, a checkpoint's state ...): the
    file, the first few of its tensors (a UNet has hundreds) and what a token file holds."""
    shown = ", ".join(sorted(names)[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
    version = meta.get("format_version")
    hint = _run_folder_hint(path.parent) if (path.parent / CHECKPOINT_STATE).is_file() else None
    return (f"{path} is not an agsm soft token file: it holds {count(len(names), 'tensor')} ({shown or 'none'}) and "
            + (f"format_version {version!r}" if version is not None else "no format_version")
            + f", where a token file holds psi_pos and time_table (and psi_neg when trained) with format_version "
            f"{FORMAT_VERSION!r}; " + (hint or f"pass the {FILE_NAME} that `agsm train` or `agsm export` writes"))


def locate_token_file(source: str | Path, subfolder: str | None = None, weight_name: str | None = None,
                      revision: str | None = None) -> Path:
    """The token file `source` names: a local file or folder (always, and offline), else a Hugging Face Hub repo id
    whose `subfolder`/`weight_name` (default soft_tokens.safetensors) is fetched with hf_hub_download, which keeps
    it in the Hub cache and honours HF_HUB_OFFLINE (then only cached files are found)."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    name = weight_name or FILE_NAME
    local = Path(source)
    if local.is_dir():
        return resolve_token_path(local / (subfolder or "") / name)
    if local.is_file():
        if subfolder or weight_name:
            raise ValueError(f"subfolder={subfolder!r} and weight_name={weight_name!r} choose a file in a folder or a "
                             f"Hub repo, but {source} is a file already; pass its folder, or drop them")
        return resolve_token_path(local)
    # a missing file in a run or checkpoint folder (run/soft_tokens.safetensors before the run finished) is local:
    # say what the folder is before trying the Hub with it
    hint = _run_folder_hint(local.parent) if local.suffix == ".safetensors" else None
    if hint:
        raise FileNotFoundError(hint)
    repo_id = str(source)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise FileNotFoundError(f"no soft token file at {source}: it is neither a local file or folder nor a Hugging "
                                f"Face Hub repo id (owner/name); pass a {FILE_NAME} file, its folder, or a Hub "
                                "repo id") from None
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, name, subfolder=subfolder, revision=revision,
                                                    library_name="agsm"))
    except Exception as exc:  # the Hub client raises a dozen types (offline, missing repo or file, network ...)
        offline = (" (HF_HUB_OFFLINE is set: only files already in the Hub cache are found)"
                   if constants.HF_HUB_OFFLINE else "")
        wanted = "/".join(part for part in (subfolder, name) if part)
        raise FileNotFoundError(f"no soft token file at {source}: it is not a local file or folder, and {wanted} could "
                                f"not be fetched from the Hugging Face Hub repo {repo_id!r}{offline}: "
                                f"{type(exc).__name__}: {exc}") from exc


def read_tokens(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = resolve_token_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = list(f.keys())
            # a foreign file (a whole UNet's weights) is recognised from its header, before its tensors are read
            ours = meta.get("format_version") == FORMAT_VERSION and "psi_pos" in names
            tensors = {k: f.get_tensor(k) for k in names} if ours else {}
    except Exception as exc:  # safetensors raises several types for a damaged or foreign file
        raise ValueError(f"{path} is not a readable safetensors file ({exc}); a soft token file is the "
                         f"{FILE_NAME} that `agsm train` or `agsm export` writes") from exc
    if not ours:
        raise ValueError(_not_a_token_file(path, meta, names))
    check_token_file(tensors, meta, path)
    return tensors, meta


def tokens_from_file(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> SoftTokens:
    sets = [tensors["psi_pos"]] + ([tensors["psi_neg"]] if "psi_neg" in tensors else [])
    table = tensors["time_table"]
    tokens = SoftTokens(sets[0].shape[0], sets[0].shape[1], num_sets=len(sets), num_buckets=table.shape[0],
                        num_train_timesteps=int(meta.get("num_train_timesteps", 1000)),
                        time_groups=table.shape[1] if table.ndim == 3 else 1)
    with torch.no_grad():
        tokens.sets.copy_(torch.stack(sets))
        tokens.time_table.copy_(table)
    return tokens.requires_grad_(False)


def check_compatible(meta: dict[str, str], model_info: dict, path) -> None:
    """Refuse tokens made for another architecture (or another timestep count), naming both sides."""
    made_for = {k: meta.get(k) for k in ("family", "architecture", "token_width")}
    model = {k: str(model_info[k]) for k in made_for}
    if made_for != model:
        raise ValueError(f"soft tokens {path} were made for {_describe(made_for)} but this model is "
                         f"{_describe(model)}; train tokens for this model with `agsm train`")
    steps = model_info.get("num_train_timesteps")
    if steps is not None and meta.get("num_train_timesteps") != str(steps):
        raise ValueError(f"soft tokens {path} bucket timesteps for num_train_timesteps="
                         f"{meta.get('num_train_timesteps')} but this model's scheduler has {steps}; their time "
                         "table would be read at the wrong rows: train tokens for this model with `agsm train`")


def _describe(info: dict) -> str:
    return f"{info['architecture']} ({info['family']}, token width {info['token_width']})"
