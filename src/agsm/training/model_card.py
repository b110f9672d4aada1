"""A model card (README.md) beside exported soft token files, ready for the Hugging Face Hub.

    write_model_card("runs/sd15-agsm", config, num_images=1000)

The YAML front matter (library_name agsm, base_model when the backbone came from the Hub, tags) is what the
Hub indexes; the body says what the tokens are: method and settings, backbone, data, steps, which file holds
the online and which the EMA tokens (read from each file's own metadata), the final training metrics (the last
line of train_log.jsonl), the validation images if the run drew any (linked relative to the folder, so they show
on the Hub once the folder is uploaded) and how to use them: from the Hub repo the folder is uploaded to, or from
the folder on disk. Everything comes from the token files, the run's config and its
log, so the card describes exactly what was written.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml
from safetensors import safe_open

from ..utils.atomic_files import write_text
from ..utils.counts import count as counted
from ..tokens.token_file import FILE_NAME

CARD_NAME = "README.md"
VALIDATION_FOLDER = "validation"  # training/validation_images.py FOLDER
LOG_NAME = "train_log.jsonl"
CONFIG_NAME = "config.yaml"
WEIGHTS_MEANING = {"online": "online: the tokens the optimiser trained",
                   "ema": "EMA: the exponential moving average of the online tokens"}
# Run settings that describe the training itself, in the order a reader wants them (absent ones are skipped).
TRAIN_KEYS = ("steps", "images_per_step", "lr", "min_lr", "weight_decay", "seed", "mixed_precision", "export_tokens")
# What names a local data set; a Hugging Face dataset (data.format hf) is named by all its reading options.
LOCAL_DATA_KEYS = ("format", "path", "captions", "max_images")
DATA_DETAILS_SKIPPED = ("cache_dir", "cache_text", "min_size")  # how the data was cached, not what it is
_HUB_CACHE = re.compile(r"models--([^/\\]+)--([^/\\]+)[/\\]snapshots[/\\]")


def write_model_card(folder: str | Path, config=None, num_images: int | None = None) -> Path:
    """Write folder/README.md describing the token files in `folder`; returns its path.

    `config`: the run's Config (default: the folder's config.yaml, if any); `num_images`: the training images used.
    """
    folder = Path(folder)
    settings = config.to_dict() if config is not None else _read_yaml(folder / CONFIG_NAME)
    return write_text(folder / CARD_NAME, model_card_text(folder, settings, num_images))


def model_card_text(folder: Path, settings: dict, num_images: int | None = None) -> str:
    """The card's text: front matter and body, from the token files in `folder`, the run `settings` (a config
    dict, possibly empty) and the folder's train_log.jsonl."""
    files = token_files(folder)
    if not files:
        raise FileNotFoundError(f"no soft_tokens*.safetensors in {folder} to describe; write the model card after "
                                "exporting the tokens")
    meta = files[0][1]
    model_path = str(settings.get("model", {}).get("path") or "")
    base_model = base_model_of(model_path)
    method, architecture = meta.get("method", "?"), meta.get("architecture", "?")
    front = {"library_name": "agsm", **({"base_model": base_model} if base_model else {}),
             "pipeline_tag": "text-to-image",
             "tags": list(dict.fromkeys(["agsm", "soft-tokens", "diffusers", "text-to-image", method, architecture]))}
    model_ref = base_model or model_path or "path/to/the/base/model"
    sections = [
        f"# {method} soft tokens for {architecture}",
        f"Soft text tokens trained with agsm's `{method}` objective on a frozen {architecture} backbone "
        f"({meta.get('family', '?')} family). They enter the stock diffusers pipeline through attention processors "
        "and hooks; the backbone's weights are unchanged.",
        _files_section(files, settings),
        _usage_section(model_ref, folder),
        _training_section(meta, settings, model_path, num_images),
        _metrics_section(folder / LOG_NAME),
        _validation_section(folder),
    ]
    return f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n" + "\n\n".join(filter(None, sections)) + "\n"


def token_files(folder: Path) -> list[tuple[str, dict[str, str]]]:
    """(file name, metadata) of each token file in `folder`, soft_tokens.safetensors first."""
    names = sorted(p.name for p in Path(folder).glob("soft_tokens*.safetensors"))
    names.sort(key=lambda name: name != FILE_NAME)
    found = []
    for name in names:
        with safe_open(str(Path(folder) / name), framework="pt") as f:
            found.append((name, f.metadata() or {}))
    return found


def base_model_of(model_path: str) -> str | None:
    """The Hub repo id of a backbone loaded from the Hub cache (.../models--owner--name/snapshots/...), or of a
    path that is a repo id and no local folder; None for a local model of unknown origin."""
    if not model_path:
        return None
    cached = _HUB_CACHE.search(model_path)
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    if not Path(model_path).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", model_path):
        return model_path
    return None


def final_metrics(log_path: Path) -> dict | None:
    """The last complete line of train_log.jsonl (the run's final logged step), or None."""
    if not Path(log_path).is_file():
        return None
    for line in reversed(Path(log_path).read_text().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:  # a torn last line of a killed run
            continue
    return None


def _weights_of(name: str, meta: dict) -> str:
    # Files written before token files recorded their weights: the EMA file is the one named so.
    return meta.get("weights") or ("ema" if "ema" in name else "online")


def _files_section(files, settings: dict) -> str:
    decay = settings.get("method", {}).get("ema_decay")
    rows = ["| file | tokens | step |", "|---|---|---|"]
    for name, meta in files:
        meaning = WEIGHTS_MEANING.get(_weights_of(name, meta), _weights_of(name, meta))
        if _weights_of(name, meta) == "ema" and decay is not None:
            meaning += f" (decay {decay})"
        if name == FILE_NAME:
            meaning += "; loaded by default"
        rows.append(f"| `{name}` | {meaning} | {meta.get('step', '?')} |")
    return "## Files\n\n" + "\n".join(rows)


HUB_PLACEHOLDER = "<user>/<repo>"  # the card is written before any upload: the reader fills in the repo id


def _usage_section(model_ref: str, folder: Path) -> str:
    return ("## Use\n\n"
            f"Replace `{HUB_PLACEHOLDER}` with the Hub repo this folder is uploaded to "
            f"(`huggingface-cli upload {HUB_PLACEHOLDER} {shlex.quote(str(folder))}`):\n\n"
            "```python\n"
            "import agsm, diffusers\n"
            f"pipe = diffusers.DiffusionPipeline.from_pretrained({model_ref!r})\n"
            f"agsm.load_soft_tokens(pipe, \"{HUB_PLACEHOLDER}\")\n"
            "# or from the run folder on disk:\n"
            f"agsm.load_soft_tokens(pipe, {str(folder)!r})\n"
            "```\n\n"
            "`weight_name=\"soft_tokens_ema.safetensors\"` (or the other file above) picks the other tokens; "
            "`scale=` goes from 0 (the stock pipeline) to 1 (as trained). From the command line:\n\n"
            "```bash\n"
            f"agsm sample --model {shlex.quote(model_ref)} --tokens {HUB_PLACEHOLDER} "
            "--prompt 'a red circle' --out samples/\n"
            f"agsm sample --model {shlex.quote(model_ref)} --tokens {shlex.quote(str(folder))} "
            "--prompt 'a red circle' --out samples/\n"
            "```")


def _validation_section(folder: Path) -> str:
    """The base round (step 0, no tokens) and the last round of validation images, side by side per image; ''
    when the run drew none. Links are relative to the folder (validation/step-N/i.png)."""
    rounds = {}
    for record_file in Path(folder).glob(f"{VALIDATION_FOLDER}/step-*/run.json"):
        try:
            record = json.loads(record_file.read_text())
            rounds[int(record["step"])] = (record_file.parent.name, record["images"])
        except (ValueError, KeyError, TypeError):  # a round cut short by a kill: skipped
            continue
    if not rounds:
        return ""
    last = max(rounds)
    shown = [step for step in (0, last) if step in rounds] if last else [0]
    head = ["image", "prompt", *(f"step {s}" + (" (no tokens)" if s == 0 else "") for s in shown)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, image in enumerate(rounds[last][1]):
        cells = []
        for step in shown:
            name, images = rounds[step]
            cells.append(f"![{step}]({VALIDATION_FOLDER}/{name}/{images[i]['file']})" if i < len(images) else "")
        rows.append(f"| {i} | {str(image.get('prompt', '')).replace('|', '/')} | " + " | ".join(cells) + " |")
    return (f"## Validation images\n\nDrawn while training (`train.validation_prompts`), each image with its own fixed "
            f"seed in every round, so the columns differ only by the tokens; all rounds are in `{VALIDATION_FOLDER}/`."
            "\n\n" + "\n".join(rows))


def _training_section(meta: dict, settings: dict, model_path: str, num_images: int | None) -> str:
    method_settings = json.loads(meta.get("settings") or "{}")
    placement = (f"after BOS in the cross-attention of UNet stages {meta['stages']}" if "stages" in meta
                 else f"appended to the context of the first {meta.get('blocks', '?')} MM-DiT blocks")
    lines = ["## Training", "",
             f"- Method: `{meta.get('method', '?')}`",
             f"- Backbone: `{model_path or '?'}` (architecture {meta.get('architecture', '?')}, family "
             f"{meta.get('family', '?')}, token width {meta.get('token_width', '?')})",
             f"- Tokens: {meta.get('num_tokens', '?')}, {placement}; {meta.get('num_buckets', '?')} timestep buckets",
             f"- Data: {_describe_data(settings.get('data', {}), num_images)}",
             f"- Steps: {meta.get('step', '?')}"]
    train = settings.get("train", {})
    extra = ", ".join(f"{key} {train[key]}" for key in TRAIN_KEYS[1:] if train.get(key) is not None)
    if extra:
        lines[-1] += f" ({extra})"
    if method_settings:
        lines += ["", "Method settings:", "", "| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_value(value)} |" for key, value in sorted(method_settings.items()) if key != "name"]
    return "\n".join(lines)


def _describe_data(data: dict, num_images: int | None) -> str:
    keys = [k for k in data if k not in DATA_DETAILS_SKIPPED] if data.get("format") == "hf" else LOCAL_DATA_KEYS
    details = [f"{key} `{data[key]}`" for key in keys if data.get(key) not in (None, "", [], {})]
    count = counted(num_images, "image") if num_images is not None else "number of images not recorded"
    return ", ".join(details + [count]) if details else count


def _metrics_section(log_path: Path) -> str:
    last = final_metrics(log_path)
    if last is None:
        return "## Final metrics\n\nNo train_log.jsonl was found beside the tokens."
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {key} | {_value(value)} |" for key, value in last.items() if key != "step"]
    return f"## Final metrics\n\nFrom the last line of {LOG_NAME} (step {last.get('step', '?')}):\n\n" + "\n".join(rows)


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}
