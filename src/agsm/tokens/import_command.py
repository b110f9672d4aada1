"""`agsm import-tokens`: the AGSM authors' published token files (soft_tokens.pth, soft_t_tokens.pth) as an agsm
token file (authors_tokens.py does the reading and mapping), checked against the model folder they will be used
with when --model names one. Reading that folder's configs is enough for the check: no weights are loaded."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

TOKENS_NAME, TIME_NAME = "soft_tokens.pth", "soft_t_tokens.pth"  # the names in the authors' checkpoints/<backbone>/

DESCRIPTION = f"""Import the soft tokens the AGSM authors published (their checkpoints/sd1.5, sdxl and sd3 folders:
{TOKENS_NAME}, an nn.Parameter [2, tokens, width], on SD3 [2, blocks, tokens, width], and {TIME_NAME}, an
nn.Embedding(100, width), on SD3 (100, blocks x width)) into an agsm token file that agsm.load_soft_tokens, `agsm sample --tokens` and `agsm eval --tokens` take.
The files are read with torch.load(weights_only=True): a file holding anything but tensors and that Embedding is
refused without running it. The written file records the source files' names and SHA-256 (metadata
imported_from). See docs/loading.md, "The authors' published tokens"."""


def add_command(subparsers) -> None:
    cmd = subparsers.add_parser("import-tokens", help="turn the AGSM authors' published .pth tokens into a token file",
                                description=DESCRIPTION)
    cmd.add_argument("--tokens", required=True, metavar="PTH|FOLDER",
                     help=f"their {TOKENS_NAME}, or the folder holding it and {TIME_NAME}")
    cmd.add_argument("--time-tokens", metavar="PTH",
                     help=f"their {TIME_NAME} (the time table); default: the {TIME_NAME} beside --tokens, if there is "
                          "one, else none (tokens trained without a time table)")
    cmd.add_argument("--backbone", choices=("sd15", "sdxl", "sd3"),
                     help="the backbone the tokens were trained on; default: from --model, else from the tokens' "
                          "shape (4-D: sd3; width 768: sd15; 2048: sdxl)")
    cmd.add_argument("--model", metavar="FOLDER",
                     help="the local diffusers pipeline folder the tokens will be used with: its architecture, token "
                          "width, block count and timesteps are checked before anything is written")
    cmd.add_argument("--out", required=True, metavar="FILE|FOLDER",
                     help="the token file to write (*.safetensors), or a folder for soft_tokens.safetensors")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing token file at --out")
    cmd.set_defaults(run=_run)


def source_files(tokens: str | Path, time_tokens: str | Path | None) -> tuple[Path, Path | None]:
    """(tokens file, time table file or None) from --tokens (a file or their folder) and --time-tokens."""
    tokens = Path(tokens)
    if tokens.is_dir():
        tokens = tokens / TOKENS_NAME
    if time_tokens is not None:
        return tokens, Path(time_tokens)
    beside = tokens.parent / TIME_NAME
    return tokens, beside if beside.is_file() else None


def model_facts(model: str | Path) -> dict:
    """What the import checks about a pipeline folder, from its configs: architecture, token_width, num_blocks
    (SD3), num_train_timesteps."""
    from ..backbones.unet import unet_architecture

    folder = Path(model)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"--model {model} is not a diffusers pipeline folder (no model_index.json); pass the "
                                "local folder of the pipeline the tokens will be used with, or leave --model out")
    index = _json(folder / "model_index.json")
    steps = _json(folder / "scheduler" / "scheduler_config.json").get("num_train_timesteps")
    if index.get("unet"):
        config = _json(folder / "unet" / "config.json")
        return {"architecture": unet_architecture(SimpleNamespace(config=config)), "num_train_timesteps": steps,
                "token_width": config["cross_attention_dim"]}
    config = _json(folder / "transformer" / "config.json") if index.get("transformer") else {}
    if config.get("_class_name") != "SD3Transformer2DModel":
        raise ValueError(f"--model {model} is neither an SD1.5/SDXL (UNet) nor an SD3 pipeline; the authors published "
                         "tokens for those three")
    return {"architecture": "sd3", "num_train_timesteps": steps, "token_width": config["caption_projection_dim"],
            "num_blocks": config["num_layers"]}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} ({exc}); is the pipeline folder complete?") from None


def _run(args, extra) -> None:
    from .authors_tokens import import_authors_tokens

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm import-tokens -h")
    tokens, time_tokens = source_files(args.tokens, args.time_tokens)
    facts = model_facts(args.model) if args.model else None
    done = import_authors_tokens(tokens, time_tokens, args.out, backbone=args.backbone, model=facts,
                                 overwrite=args.overwrite)
    print(f"wrote {done.path}: {done.architecture} tokens from {tokens}, time table from {time_tokens or 'none (zeros)'}")
    uncond = {"positive": "psi+", "negative": "psi-"}[done.uncond_tokens]
    print(f"the authors' {done.architecture} sampling puts psi+ in the conditional branch and {uncond} in the "
          f"unconditional one: agsm sample --model <{done.architecture} folder> --tokens {done.path} "
          f"--uncond-tokens {done.uncond_tokens}")
