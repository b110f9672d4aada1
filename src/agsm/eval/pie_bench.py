"""`agsm eval pie-bench`: PIE-Bench editing evaluation with agsm.editing.edit (+ soft tokens).

    agsm eval pie-bench --model /models/sd3 --tokens runs/sd3-agsm --pie /data/PIE-Bench/data --out runs/pie-agsm \
        --clip /models/clip-vit-large-patch14 --lpips /models/lpips --dino /models/dino-vitb8

Every entry of mapping_file.json (or --types / --num of them) is edited from its original to its editing prompt
([ ] marks removed) at the model's size (--size; the source is resized, LANCZOS), entry i (in sorted-id order)
with seed + i; edits go to OUT/edited/<id>.png with OUT/manifest.jsonl, so a killed run resumes. Each edit is
resized back to the source's size (bicubic) and scored as PIE-Bench does (pie_metrics.py): structure distance,
background PSNR / LPIPS / MSE / SSIM, CLIP whole / edited. A metric whose weights (--clip, --lpips, --dino) are
not given is skipped with a warning; naming it in --metrics makes that an error.
Writes results.json (means overall and per editing type), scores.jsonl (per entry), results.md (PIE-Bench's table).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from PIL import Image

from ..utils.atomic_files import write_text
from ..backbones.variants import add_variant_options, variant_from_args
from ..utils.devices import add_device_options, resolve_device, resolve_device_and_dtype
from ..utils.progress import progress
from .generation import (Manifest, check_same_config, default_label, metric_dtype, open_pipeline, report_command,
                         run_config, save_png, write_json)
from .pie_data import EDITING_TYPES, decode_mask, read_mapping
from ..metrics.pie_metrics import DISPLAY, METRICS, WEIGHTS, background_scores, clip_scores
from .scoring import default_metric_loader

log = logging.getLogger(__name__)


def evaluate_pie(args, editor=None, metric_loader=default_metric_loader) -> dict:
    """Edit every missing entry, then score all; tests pass a fake `editor` with edit()'s signature."""
    resolve_device_and_dtype(args.device, args.dtype)  # a device this machine lacks fails first
    chosen = _chosen_metrics(args)
    items = read_mapping(args.pie, args.types.split(",") if args.types else None, args.num)
    scorers = _load_scorers(args, chosen, metric_loader)  # bad weights fail before hours of editing
    out = Path(args.out)
    (out / "edited").mkdir(parents=True, exist_ok=True)
    _edit_all(args, items, out, editor)
    manifest = Manifest(out / "manifest.jsonl").entries
    rows = _score_all(items, out, manifest, chosen, scorers)

    result = {"kind": "pie-bench", "label": args.label or default_label(args),
              "config": {**json.loads((out / "config.json").read_text()),
                         "metrics": list(chosen), "weights": {k: getattr(args, k) for k in ("clip", "lpips", "dino")},
                         "lpips_net": args.lpips_net},
              "n": len(items), "metrics": _means(rows, chosen),
              "by_type": {t: _means([r for r in rows if r["editing_type_id"] == t], chosen)
                          for t in sorted({r["editing_type_id"] for r in rows}, key=int)},
              "per_image": "scores.jsonl"}
    write_text(out / "scores.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_json(out / "results.json", result)
    write_text(out / "results.md", results_markdown([result]) + "\n")
    return result


def _chosen_metrics(args) -> dict[str, str | None]:
    """{metric: weights path or None}; explicitly requested metrics must have their weights."""
    requested = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    for name in requested or []:
        if name not in METRICS:
            raise ValueError(f"--metrics {name!r} is not one of {','.join(METRICS)}")
    chosen = {}
    for name in requested or METRICS:
        source = WEIGHTS.get(name)
        path = getattr(args, source) if source else None
        if source and path and not Path(path).exists():
            raise FileNotFoundError(f"--{source} {path} does not exist")
        if source and not path:
            if requested:
                raise ValueError(f"--metrics asks for {name}, which needs --{source} weights")
            log.warning("%s skipped: no --%s weights given", name, source)
            continue
        chosen[name] = path
    return chosen


def _edit_all(args, items: list[dict], out: Path, editor) -> None:
    from ..editing import edit, edit_options
    from ..editing.cli import options_from_args

    manifest = Manifest(out / "manifest.jsonl")
    todo = [it for it in items if it["index"] not in manifest.done(out / "edited")]
    if not todo and (out / "config.json").is_file():  # all edited: check the settings without loading the model
        _check_finished(out / "config.json", args, options_from_args(args))
        return
    pipe, sampler = open_pipeline(args.model, args.tokens, args.uncond_tokens, args.device, args.dtype,
                                  size=args.size, variant=variant_from_args(args))
    method, options = edit_options(pipe, args.method, **options_from_args(args))
    check_same_config(out / "config.json", {**run_config(args), "size": sampler.size, "method": method,
                                            "options": dataclasses.asdict(options)})
    editor = editor or edit
    for it in progress(todo, desc="PIE-Bench edits", unit="img"):
        with Image.open(it["image"]) as image:
            source = image.convert("RGB").resize((sampler.size, sampler.size), Image.Resampling.LANCZOS)
        edited = editor(pipe, source, it["source_prompt"], it["target_prompt"], seed=args.seed + it["index"],
                        method=method, progress=False, **dataclasses.asdict(options))
        name = f"{it['key']}.png"
        save_png(edited, out / "edited" / name)
        manifest.append({"index": it["index"], "key": it["key"], "file": name, "seed": args.seed + it["index"]})


def _check_finished(path: Path, args, given: dict) -> None:
    saved = json.loads(path.read_text())
    check_same_config(path, {**run_config(args), **{k: saved.get(k) for k in ("size", "method", "options")}})
    asked = {"size": args.size, "method": args.method, **given}
    held = {"size": saved["size"], "method": saved["method"], **saved["options"]}
    for name, value in asked.items():
        if value is not None and value != held.get(name):
            raise ValueError(f"{name} {value!r} differs from the finished run in {path.parent} ({held.get(name)!r}); "
                             "use another --out for a new run")


def _load_scorers(args, chosen: dict, metric_loader) -> dict:
    from ..metrics.lpips_net import load_lpips
    from ..metrics.structure_distance import load_structure_distance

    clip_path = chosen.get("clip_whole") or chosen.get("clip_edited")
    device = resolve_device(args.device)
    return {"lpips": load_lpips(chosen["lpips"], args.lpips_net, device) if "lpips" in chosen else None,
            "structure": load_structure_distance(chosen["structure_distance"], device, args.dino_layer)
            if "structure_distance" in chosen else None,
            "clip": metric_loader("clip", clip_path, device, metric_dtype(args), 16) if clip_path else None}


def _score_all(items, out: Path, manifest: dict, chosen: dict, scorers: dict, chunk: int = 32) -> list[dict]:
    clip, lpips, structure = scorers["clip"], scorers["lpips"], scorers["structure"]
    rows = []
    for start in progress(range(0, len(items), chunk), desc="PIE-Bench metrics", unit="chunk"):
        batch = items[start:start + chunk]
        sources, edits, masks = [], [], []
        for it in batch:
            with Image.open(it["image"]) as image:
                sources.append(image.convert("RGB"))
            with Image.open(out / "edited" / manifest[it["index"]]["file"]) as image:
                edits.append(image.convert("RGB").resize(sources[-1].size, Image.Resampling.BICUBIC))
            masks.append(decode_mask(it["mask_rle"], sources[-1].height, sources[-1].width))
        clips = clip_scores(clip, edits, masks, [it["target_prompt"] for it in batch], chosen) if clip else {}
        for k, it in enumerate(batch):
            scores = background_scores(sources[k], edits[k], masks[k], chosen, lpips, structure)
            scores.update({name: values[k] for name, values in clips.items()})
            rows.append({"key": it["key"], "index": it["index"], "editing_type_id": it["editing_type_id"],
                         "source_prompt": it["source_prompt"], "target_prompt": it["target_prompt"],
                         "file": f"edited/{manifest[it['index']]['file']}", **scores})
    return rows


def _means(rows: list[dict], chosen) -> dict:
    out = {}
    for name in chosen:
        values = [r[name] for r in rows if not math.isnan(r[name])]
        out[name] = {"mean": sum(values) / len(values) if values else None, "n": len(values)}
    return out


def results_markdown(results: list[dict]) -> str:
    """PIE-Bench's table (its scale factors), one row per results dict; then the CLIP-edited score per type."""
    names = [m for m in METRICS if any(m in r["metrics"] for r in results)]
    head = [f"{DISPLAY[m][0]} {'↑' if DISPLAY[m][2] else '↓'}" for m in names]
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(names)]
    for r in results:
        cells = [_cell(r["metrics"].get(m), DISPLAY[m][1]) for m in names]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", f"PIE-Bench, {results[0]['n']} entries. Per editing type:", "",
              "| type | " + " | ".join(head) + " |", "|---|" + "---|" * len(names)]
    for r in results:
        for t, means in r["by_type"].items():
            cells = [_cell(means.get(m), DISPLAY[m][1]) for m in names]
            lines.append(f"| {r['label']}: {t} {EDITING_TYPES[t]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(entry, factor) -> str:
    return "-" if not entry or entry["mean"] is None else f"{entry['mean'] * factor:.2f}"


def add_commands(eval_subparsers) -> None:
    from ..editing.cli import add_edit_options

    p = eval_subparsers.add_parser("pie-bench", help="PIE-Bench editing: edit with agsm.editing, score structure, "
                                                     "background preservation and CLIP; resumable")
    p.add_argument("--model", required=True, help="local diffusers pipeline folder (SD1.5, SDXL or SD3)")
    p.add_argument("--tokens", help="soft_tokens.safetensors (or its folder); omit for the base model")
    p.add_argument("--pie", required=True, help="PIE-Bench's data folder: mapping_file.json, annotation_images/")
    p.add_argument("--out", required=True, help="folder for edited/, manifest, results.json, scores.jsonl, results.md")
    add_variant_options(p)
    add_edit_options(p)
    p.add_argument("--size", type=int, help="edit at this side in pixels (default: the model's native size)")
    p.add_argument("--seed", type=int, default=0, help="entry i (in sorted-id order) uses seed + i")
    p.add_argument("--types", help="comma-separated editing type ids 0-9 (default: all)")
    p.add_argument("--num", type=int, help="only the first N entries (after --types)")
    p.add_argument("--metrics", help=f"comma-separated subset of {','.join(METRICS)}; each must have its weights")
    p.add_argument("--clip", help="CLIP weights for agsm.metrics' 'clip' (openai/clip-vit-large-patch14 folder)")
    p.add_argument("--lpips", help="folder with LPIPS linear weights and the torchvision backbone (lpips_net.py)")
    p.add_argument("--lpips-net", default="squeeze", choices=("alex", "vgg", "squeeze"),
                   help="LPIPS backbone (PIE-Bench: squeeze)")
    p.add_argument("--dino", help="transformers DINO ViT folder (facebook/dino-vitb8) for the structure distance")
    p.add_argument("--dino-layer", type=int, help="layer whose keys are compared (default: the last, 11 for ViT-B)")
    add_device_options(p)
    p.add_argument("--label", help="row name in results.md (default: the token file or model name)")
    p.set_defaults(run=report_command("pie-bench", evaluate_pie, results_markdown))

