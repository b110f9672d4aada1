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

from ..utils.atomic_files import write_json, write_png, write_text
from ..backbones.variants import add_variant_options, variant_from_args
from ..utils.devices import add_device_options, resolve_device, resolve_device_and_dtype
from ..utils.markdown_tables import fixed, table_lines
from ..utils.progress import progress
from .generation import default_label, metric_dtype, open_pipeline, report_command, run_config
from .resumable import ResumableRun
from .pie_data import EDITING_TYPES, decode_mask, read_mapping
from ..metrics.pie_metrics import DISPLAY, METRICS, WEIGHTS, background_scores, clip_scores
from .scoring import default_metric_loader

log = logging.getLogger(__name__)


def evaluate_pie(*, model, pie, out, tokens=None, uncond_tokens: str = "positive", method=None, options=None,
                 size=None, seed: int = 0, types=None, num=None, metrics=None, clip=None, lpips=None,
                 lpips_net: str = "squeeze", dino=None, dino_layer=None, device: str = "auto", dtype="auto",
                 variant=None, label=None, overwrite: bool = False, editor=None,
                 metric_loader=default_metric_loader) -> dict:
    """Edit every missing entry, then score all (options as `agsm eval pie-bench`'s; `options`: the editing
    method's options by name, as agsm.editing.cli.options_from_args gives them); tests pass a fake `editor` with
    edit()'s signature. A folder holding other settings is refused, or with `overwrite` started afresh."""
    resolve_device_and_dtype(device, dtype)  # a device this machine lacks fails first
    weights = {"clip": clip, "lpips": lpips, "dino": dino}
    chosen = _chosen_metrics(metrics, weights)
    items = read_mapping(pie, types.split(",") if types else None, num)
    scoring = {"device": resolve_device(device), "dtype": metric_dtype(device, dtype)}
    scorers = _load_scorers(chosen, lpips_net, dino_layer, scoring, metric_loader)  # bad weights fail first
    out = Path(out)
    identity = dict(model=model, tokens=tokens, uncond_tokens=uncond_tokens, seed=seed, device=device, dtype=dtype,
                    variant=variant)
    run = ResumableRun(out, run_config(**identity), items_dir="edited", resolved_keys=("size", "method", "options"),
                       files_in_items_dir=True, overwrite=overwrite)
    _edit_all(run, items, identity, method, dict(options or {}), size, editor)
    rows = _score_all(items, run, chosen, scorers)

    result = {"kind": "pie-bench", "label": label or default_label(model, tokens, variant),
              "config": {**run.settings, **run.resolved,
                         "metrics": list(chosen), "weights": weights, "lpips_net": lpips_net},
              "n": len(items), "metrics": _means(rows, chosen),
              "by_type": {t: _means([r for r in rows if r["editing_type_id"] == t], chosen)
                          for t in sorted({r["editing_type_id"] for r in rows}, key=int)},
              "per_image": "scores.jsonl"}
    write_text(out / "scores.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_json(out / "results.json", result)
    write_text(out / "results.md", results_markdown([result]) + "\n")
    return result


def pie_keywords(args) -> dict:
    """The CLI adapter: `agsm eval pie-bench`'s parsed options as evaluate_pie's keywords."""
    from ..editing.cli import options_from_args

    return {"model": args.model, "pie": args.pie, "out": args.out, "tokens": args.tokens, "overwrite": args.overwrite,
            "uncond_tokens": args.uncond_tokens, "method": args.method, "options": options_from_args(args),
            "size": args.size, "seed": args.seed, "types": args.types, "num": args.num, "metrics": args.metrics,
            "clip": args.clip, "lpips": args.lpips, "lpips_net": args.lpips_net, "dino": args.dino,
            "dino_layer": args.dino_layer, "device": args.device, "dtype": args.dtype,
            "variant": variant_from_args(args), "label": args.label}


def _chosen_metrics(metrics: str | None, weights: dict) -> dict[str, str | None]:
    """{metric: weights path or None}; explicitly requested metrics must have their weights."""
    requested = [m.strip() for m in metrics.split(",")] if metrics else None
    for name in requested or []:
        if name not in METRICS:
            raise ValueError(f"--metrics {name!r} is not one of {','.join(METRICS)}")
    chosen = {}
    for name in requested or METRICS:
        source = WEIGHTS.get(name)
        path = weights[source] if source else None
        if source and path and not Path(path).exists():
            raise FileNotFoundError(f"--{source} {path} does not exist")
        if source and not path:
            if requested:
                raise ValueError(f"--metrics asks for {name}, which needs --{source} weights")
            log.warning("%s skipped: no --%s weights given", name, source)
            continue
        chosen[name] = path
    return chosen


def _edit_all(run: ResumableRun, items: list[dict], identity: dict, method, given: dict, size, editor) -> None:
    from ..editing import edit, edit_options

    done = run.entries
    todo = [it for it in items if it["index"] not in done]
    if not todo and run.resolved is not None:  # all edited: check the settings without loading the model
        held = {"size": run.resolved["size"], "method": run.resolved["method"], **run.resolved["options"]}
        run.check_given({"size": size, "method": method, **given}, held)
        return
    pipe, sampler = open_pipeline(identity["model"], identity["tokens"], identity["uncond_tokens"],
                                  identity["device"], identity["dtype"], size=size, variant=identity["variant"])
    method, options = edit_options(pipe, method, **given)
    run.resolve({"size": sampler.size, "method": method, "options": dataclasses.asdict(options)})
    editor = editor or edit
    seed = identity["seed"]
    for it in progress(todo, desc="PIE-Bench edits", unit="img"):
        with Image.open(it["image"]) as image:
            source = image.convert("RGB").resize((sampler.size, sampler.size), Image.Resampling.LANCZOS)
        edited = editor(pipe, source, it["source_prompt"], it["target_prompt"], seed=seed + it["index"],
                        method=method, progress=False, **dataclasses.asdict(options))
        name = f"{it['key']}.png"
        write_png(run.out / run.items_dir / name, edited)
        run.record([{"index": it["index"], "key": it["key"], "file": name, "seed": seed + it["index"]}])


def _load_scorers(chosen: dict, lpips_net: str, dino_layer, scoring: dict, metric_loader) -> dict:
    from ..metrics.lpips_net import load_lpips
    from ..metrics.structure_distance import load_structure_distance

    clip_path = chosen.get("clip_whole") or chosen.get("clip_edited")
    device = scoring["device"]
    return {"lpips": load_lpips(chosen["lpips"], lpips_net, device) if "lpips" in chosen else None,
            "structure": load_structure_distance(chosen["structure_distance"], device, dino_layer)
            if "structure_distance" in chosen else None,
            "clip": metric_loader("clip", clip_path, device, scoring["dtype"], 16) if clip_path else None}


def _score_all(items, run: ResumableRun, chosen: dict, scorers: dict, chunk: int = 32) -> list[dict]:
    clip, lpips, structure = scorers["clip"], scorers["lpips"], scorers["structure"]
    rows = []
    for start in progress(range(0, len(items), chunk), desc="PIE-Bench metrics", unit="chunk"):
        batch = items[start:start + chunk]
        sources, edits, masks = [], [], []
        for it in batch:
            with Image.open(it["image"]) as image:
                sources.append(image.convert("RGB"))
            with Image.open(run.file(it["index"])) as image:
                edits.append(image.convert("RGB").resize(sources[-1].size, Image.Resampling.BICUBIC))
            masks.append(decode_mask(it["mask_rle"], sources[-1].height, sources[-1].width))
        clips = clip_scores(clip, edits, masks, [it["target_prompt"] for it in batch], chosen) if clip else {}
        for k, it in enumerate(batch):
            scores = background_scores(sources[k], edits[k], masks[k], chosen, lpips, structure)
            scores.update({name: values[k] for name, values in clips.items()})
            rows.append({"key": it["key"], "index": it["index"], "editing_type_id": it["editing_type_id"],
                         "source_prompt": it["source_prompt"], "target_prompt": it["target_prompt"],
                         "file": f"{run.items_dir}/{run.file(it['index']).name}", **scores})
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
    overall = table_lines(["method", *head], [[r["label"], *(_cell(r["metrics"].get(m), DISPLAY[m][1]) for m in names)]
                                               for r in results])
    per_type = table_lines(["type", *head], [[f"{r['label']}: {t} {EDITING_TYPES[t]}",
                                              *(_cell(means.get(m), DISPLAY[m][1]) for m in names)]
                                             for r in results for t, means in r["by_type"].items()])
    return "\n".join([*overall, "", f"PIE-Bench, {results[0]['n']} entries. Per editing type:", "", *per_type])


def _cell(entry, factor) -> str:
    return fixed(None if not entry or entry["mean"] is None else entry["mean"] * factor, 2)


def add_commands(eval_subparsers) -> None:
    from ..cli_options import add_model_options, add_overwrite_option
    from ..editing.cli import add_edit_options

    p = eval_subparsers.add_parser("pie-bench", help="PIE-Bench editing: edit with agsm.editing, score structure, "
                                                     "background preservation and CLIP; resumable")
    add_model_options(p)
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
    add_overwrite_option(p)
    p.set_defaults(run=report_command("pie-bench", evaluate_pie, results_markdown, pie_keywords))

