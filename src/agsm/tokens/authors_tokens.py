"""The soft tokens the AGSM authors published with their public code, read without running code from the files
and written as an agsm token file (`agsm import-tokens`; docs/loading.md, "The authors' published tokens").

Their code saves two objects per backbone with torch.save (docs/method.md, "Soft tokens"):
- `soft_tokens.pth`, an nn.Parameter. SD1.5 and SDXL: [2, N, D], D the UNet's cross-attention width; one set of N
  tokens for every cross-attention of the down and mid stages, inserted after BOS. SD3: [2, L, N, D], D the
  context width after the context embedder (caption_projection_dim); block k of the first L joint blocks appends
  its own N tokens to its context. Index 0 is psi+ (their `neg` index 0, the conditional branch), 1 is psi-.
- `soft_t_tokens.pth`, an nn.Embedding(100, D) (SD3: (100, L x D), block k reading columns [k D, (k + 1) D)): the
  time table, row int(t) // 10 (t = 1000 reads row 99) added to every token of the call.
agsm's layout holds the same numbers: psi_pos / psi_neg [N or L x N, D] with block k's tokens at [k N, (k + 1) N),
and time_table [100, D] (SD3: [100, L, D], one row group per block). agsm's bucket, floor(t / 10) clamped to 99,
is the authors' row for every t in [0, 1000] (integer and float timesteps alike; checked over the float32
values next to every multiple of 10), so the import needs no new token-file option. Only a batch that mixes
t = 1000 with other timesteps differs (the authors then shift every sample's row down by one); no sampler does
that.

Loading runs no code from the file: torch.load(weights_only=True) refuses every global outside torch's tensor
allow-list, plus one name these files need, torch.nn.Embedding, which is mapped to `_SavedModule`, an inert record
that keeps the saved attributes: no torch.nn class is built from the file's data.
"""
from __future__ import annotations

import hashlib
from pickle import UnpicklingError  # its exception only: nothing here unpickles but torch.load(weights_only=True)
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from . import SoftTokens, placement_for
from .token_file import FILE_NAME, read_tokens, save_tokens

ARCHITECTURES = ("sd15", "sdxl", "sd3")
NUM_ROWS = 100               # their time table: one row per 10 of the 1000 training timesteps
NUM_TRAIN_TIMESTEPS = 1000   # their row rule, int(t) // 10, assumes this
UNET_STAGES = ("down", "mid")  # their apply_soft_tokens default [True, True, False], kept by their scripts
# The full-size widths, to tell SD1.5 from SDXL tokens when neither --backbone nor --model says.
UNET_WIDTHS = {768: "sd15", 2048: "sdxl"}
# What their sampling script puts in the unconditional branch (psi+ in the conditional one): psi- on SDXL only.
AUTHORS_UNCOND = {"sd15": "positive", "sdxl": "negative", "sd3": "positive"}


class _SavedModule:
    """Stands in for torch.nn.Embedding while unpickling: receives the module's saved attributes and nothing else
    (no __setstate__, no methods), so reading the file builds no torch.nn object."""


_ALLOWED = [(_SavedModule, "torch.nn.modules.sparse.Embedding")]


@dataclass(frozen=True)
class ImportedTokens:
    path: Path           # the agsm token file written
    architecture: str    # sd15, sdxl or sd3
    uncond_tokens: str   # what the authors' sampling script uses in the unconditional branch


def load_pth(path: str | Path) -> object:
    """The object a .pth file holds, unpickled with weights_only and the one extra name above; anything else is
    refused before it is called or built."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}; pass the authors' soft_tokens.pth / soft_t_tokens.pth")
    try:
        with torch.serialization.safe_globals(_ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=True)
    except UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f"a reference to {found.group(1)}" if found else f"content the safe loader refuses ({_first_line(exc)})"
        raise ValueError(f"{path} was refused without running it: it holds {what}, where the authors' files hold "
                         "only an nn.Parameter (or a tensor) or an nn.Embedding; re-save the tensors with "
                         "torch.save(tensor) if you trust the file") from None
    except Exception as exc:  # a truncated or foreign file: torch raises RuntimeError, KeyError ... by format
        raise ValueError(f"{path} is not a file written by torch.save ({type(exc).__name__}: {_first_line(exc)}); "
                         "pass the authors' soft_tokens.pth / soft_t_tokens.pth") from None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else repr(exc)


def tensor_of(obj, path, expected: str) -> torch.Tensor:
    """The float tensor in what a .pth held: a tensor or nn.Parameter, an nn.Embedding's weight, or an
    nn.Embedding's state dict ({'weight': tensor})."""
    if isinstance(obj, _SavedModule):
        saved = vars(obj)
        if saved.get("max_norm") is not None:  # such an Embedding rescales rows as it reads them
            raise ValueError(f"{path} holds an nn.Embedding with max_norm={saved['max_norm']}, whose lookups rescale "
                             "its rows; the authors' time table has none, so this is not their file")
        obj = (saved.get("_parameters") or {}).get("weight")
        if obj is None:
            raise ValueError(f"{path} holds an nn.Embedding without a weight; expected {expected}")
    elif isinstance(obj, dict) and set(obj) == {"weight"}:
        obj = obj["weight"]
    if not (isinstance(obj, torch.Tensor) and obj.is_floating_point()):
        raise ValueError(f"{path} holds {_describe(obj)}; expected {expected}")
    return obj.detach().float()


def _describe(obj) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {list(obj.shape)}"
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))[:5]}"
    return f"a {type(obj).__name__}"


def authors_architecture(tokens: torch.Tensor, backbone: str | None, model: dict | None, path) -> str:
    """sd15, sdxl or sd3: from --backbone, else from the --model facts, else from the tokens' shape; whichever are
    given must agree."""
    if backbone is not None and backbone not in ARCHITECTURES:
        raise ValueError(f"backbone {backbone!r} is not one of {', '.join(ARCHITECTURES)}")
    named = [name for name in (backbone, model and model["architecture"]) if name]
    if len(set(named)) > 1:
        raise ValueError(f"--backbone {backbone} but --model is an {model['architecture']} pipeline; give the "
                         "backbone the tokens were trained for")
    shaped = "sd3" if tokens.ndim == 4 else UNET_WIDTHS.get(tokens.shape[-1]) if tokens.ndim == 3 else None
    architecture = named[0] if named else shaped
    if architecture is None:
        raise ValueError(f"{path}: cannot tell the backbone of tokens of shape {list(tokens.shape)} (not the full-size "
                         "SD1.5 width 768 or SDXL width 2048); pass --backbone sd15|sdxl|sd3 or --model")
    return architecture


def authors_layout(tokens: torch.Tensor, table: torch.Tensor | None, architecture: str, model: dict | None,
                   paths: tuple) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Their tensors in agsm's layout: (sets [2, total, D], time table [100, D] or [100, L, D], L) for L blocks
    (1 on a UNet); every shape is checked first, naming the one expected."""
    tokens_path, table_path = paths
    unet = architecture != "sd3"
    expected = "[2, tokens, width]" if unet else "[2, blocks, tokens, width]"
    if tokens.ndim != (3 if unet else 4) or tokens.shape[0] != 2:
        raise ValueError(f"{tokens_path} holds tokens of shape {list(tokens.shape)}; {architecture} tokens of the "
                         f"authors' code have shape {expected} (index 0 psi+, 1 psi-)")
    width, blocks = tokens.shape[-1], 1 if unet else tokens.shape[1]
    if model is not None:
        _check_against_model(width, blocks, architecture, model, tokens_path)
    if table is None:  # their use_soft_t off: no time table, the same as a table of zeros
        table = torch.zeros(NUM_ROWS, blocks * width)
    if list(table.shape) != [NUM_ROWS, blocks * width]:
        what = "" if unet else f" ({blocks} blocks x width {width})"
        raise ValueError(f"{table_path} holds a time table of shape {list(table.shape)}; the tokens in {tokens_path} "
                         f"need [{NUM_ROWS}, {blocks * width}]{what}")
    sets = tokens.reshape(2, -1, width)  # SD3: block-major, block k's tokens at [k N, (k + 1) N)
    table = table if blocks == 1 else table.reshape(NUM_ROWS, blocks, width)  # block k's columns: group k
    return sets, table, blocks


def _check_against_model(width, blocks, architecture, model, path) -> None:
    what = "cross_attention_dim" if architecture != "sd3" else "caption_projection_dim"
    if width != model["token_width"]:
        raise ValueError(f"{path} holds tokens of width {width} but the {architecture} model's {what} is "
                         f"{model['token_width']}; import tokens trained for this model")
    if blocks > model.get("num_blocks", blocks):
        raise ValueError(f"{path} holds tokens for {blocks} blocks but the model has {model['num_blocks']}")
    steps = model.get("num_train_timesteps")
    if steps is not None and steps != NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"the authors' time table reads row int(t) // 10 of {NUM_ROWS}, for {NUM_TRAIN_TIMESTEPS} "
                         f"training timesteps, but the model's scheduler has {steps}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_authors_tokens(tokens_path: str | Path, time_path: str | Path | None, out: str | Path,
                          backbone: str | None = None, model: dict | None = None,
                          overwrite: bool = False) -> ImportedTokens:
    """Read the authors' `tokens_path` (soft_tokens.pth) and `time_path` (soft_t_tokens.pth; None: they trained
    without one), map them to agsm's layout and write the token file `out` (read back and checked before
    returning). `model`: facts of the pipeline they will be used with (architecture, token_width, num_blocks,
    num_train_timesteps; import_command.model_facts), checked first."""
    tokens_path, out = Path(tokens_path), Path(out)
    if out.is_dir() or out.suffix != ".safetensors":  # a folder, as `agsm export --out` takes
        out = out / FILE_NAME
    time_path = Path(time_path) if time_path is not None else None
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass another output path, or overwrite=True (--overwrite)")
    tokens = tensor_of(load_pth(tokens_path), tokens_path, "the soft tokens, an nn.Parameter [2, (blocks,) tokens, "
                                                             "width]")
    table = None if time_path is None else tensor_of(load_pth(time_path), time_path,
                                                     "the time table, an nn.Embedding(100, width x blocks)")
    architecture = authors_architecture(tokens, backbone, model, tokens_path)
    sets, table, blocks = authors_layout(tokens, table, architecture, model, (tokens_path, time_path))
    soft = SoftTokens(sets.shape[1], sets.shape[2], num_sets=2, num_buckets=NUM_ROWS,
                      num_train_timesteps=NUM_TRAIN_TIMESTEPS, time_groups=1 if table.ndim == 2 else blocks)
    with torch.no_grad():
        soft.sets.copy_(sets)
        soft.time_table.copy_(table)
    family = "unet" if architecture != "sd3" else "mmdit"
    info = {"family": family, "architecture": architecture, "token_width": sets.shape[2],
            "num_train_timesteps": NUM_TRAIN_TIMESTEPS}
    files = {"tokens": tokens_path, "time_table": time_path}
    source = {role: {"file": p.name, "sha256": sha256_of(p)} for role, p in files.items() if p is not None}
    source["by"] = "agsm import-tokens"
    source["layout"] = "the AGSM authors' public code (torch.save of soft_tokens and soft_t_tokens)"
    settings = {"num_tokens": tokens.shape[-2], "time_table": "per block" if table.ndim == 3 else "shared",
                "authors_uncond_tokens": AUTHORS_UNCOND[architecture]}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_tokens(out, soft, info, placement_for(family, stages=UNET_STAGES, blocks=blocks), "agsm", settings,
                step=0, weights="online", imported_from=source)  # their files hold the online tokens, not the EMA
    read_tokens(out)  # the file as any loader will see it: metadata, shapes and digest
    return ImportedTokens(out, architecture, AUTHORS_UNCOND[architecture])
