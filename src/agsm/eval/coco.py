"""`agsm eval coco`: the COCO val5K protocol of docs/method.md's results table.

    agsm eval coco --model /models/sd15 --tokens runs/sd15-agsm --coco /data/coco --out runs/coco-agsm \
        --metrics clip=/models/clip-vit-large-patch14 pickscore=/models/pickscore imagereward=/models/ImageReward \
        hpsv2=/models/hpsv2 --inception /models/pt_inception-2015-12-05-6726825d.pth

The first caption of each val2017 image (coco_data.py says which is first), images sorted by id, the first --num;
image i drawn with seed + i by the model's recommended sampler, else the backbone's evaluation sampler (SD1.5/SDXL
DDIM 30 CFG 7, SD3 flow Euler 28 CFG 4; --steps/--guidance/--size override), on --device in --dtype (the metric
networks score in float32 unless --dtype names a precision). Images go to OUT/images/ and OUT/manifest.jsonl; a
killed run started again with the same settings redraws only what is missing. Then every --metrics NAME=PATH
scores every image (cached per metric in OUT/scores/), and FID compares the images with the same val2017 images
centre-cropped and resized to the generated size (statistics cached in --fid-reference, default
OUT/fid_reference_<size>px_<n>.npz).
Writes results.json (config, mean per metric, n, FID), scores.jsonl (per image) and results.md (docs/method.md's layout).
"""
from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from ..draw import draw_batches
from ..utils.atomic_files import write_json, write_png, write_text
from ..utils.devices import resolve_device, resolve_device_and_dtype
from ..utils.markdown_tables import fixed, markdown_table
from ..utils.progress import progress
from .coco_data import ORDERS, CroppedImages, read_captions, reference_paths
from .generation import (Sampler, add_model_args, default_label, metric_dtype, model_keywords, open_pipeline,
                         report_command, run_config, sampler_dict)
from .resumable import ResumableRun
from .scoring import default_metric_loader, parse_metric_specs, score_files

log = logging.getLogger(__name__)

# docs/method.md's COCO table: column title and the factor from the metric's natural scale (agsm.metrics) to it.
COLUMNS = (("imagereward", "ImageReward x100", 100.0), ("pickscore", "PickScore", 1.0),
           ("clip", "CLIP x100", 1.0), ("hpsv2", "HPSv2 x100", 100.0), ("fid", "FID", 1.0),
           ("aesthetic", "Aesthetic", 1.0))


def evaluate_coco(*, model, coco, out, tokens=None, uncond_tokens: str = "positive", num: int = 5000,
                  caption_order: str = "json", metrics=None, inception=None, fid_reference=None, batch_size: int = 4,
                  metric_batch_size: int = 16, label=None, steps=None, guidance=None, size=None, seed: int = 0,
                  device: str = "auto", dtype="auto", variant=None, overwrite: bool = False,
                  metric_loader=default_metric_loader, fid_extractor=None) -> dict:
    """Run the protocol (options as `agsm eval coco`'s, see add_commands); `metrics`: {name: weights} or
    ['name=path', ...]. A folder holding other settings is refused, or with `overwrite` started afresh
    (agsm.eval.resumable). Tests inject a metric loader / FID extractor."""
    resolve_device_and_dtype(device, dtype)  # a device this machine lacks fails first
    out = Path(out)
    items = read_captions(coco, num, caption_order)
    # every weight path is checked before hours of generation
    metrics = parse_metric_specs(metrics) if isinstance(metrics, list) else dict(metrics or {})
    if inception and not Path(inception).is_file():
        raise FileNotFoundError(f"--inception {inception} does not exist; pass pytorch-fid's "
                                "pt_inception-2015-12-05-6726825d.pth")
    if (inception or fid_extractor) and not (fid_reference and Path(fid_reference).is_file()):
        reference_paths(coco, items)  # FID will need the val images
    identity = dict(model=model, tokens=tokens, uncond_tokens=uncond_tokens, seed=seed, device=device, dtype=dtype,
                    variant=variant)
    # the settings that decide the images; --num is not one of them: a longer run extends a shorter one
    run = ResumableRun(out, run_config(**identity, caption_order=caption_order), items_dir="images",
                       files_in_items_dir=True, overwrite=overwrite)
    sampler = _draw(run, items, identity, steps, guidance, size, batch_size)
    paths = [run.file(it["index"]) for it in items]
    prompts = [it["caption"] for it in items]

    scoring = {"device": resolve_device(device), "dtype": metric_dtype(device, dtype),
               "batch_size": metric_batch_size}
    per_image = {name: _scores(name, weights, paths, prompts, out, scoring, metric_loader)
                 for name, weights in metrics.items()}
    fid = _fid(coco, inception, fid_reference, items, paths, sampler.size, out, fid_extractor, scoring)

    result = {"kind": "coco", "label": label or default_label(model, tokens, variant),
              "config": {**run_config(**identity, num=num, caption_order=caption_order),
                         "sampler": sampler_dict(sampler), "metrics": metrics, "inception": inception},
              "n": len(items),
              "metrics": {name: {"mean": statistics.fmean(s), "std": statistics.pstdev(s), "n": len(s)}
                          for name, s in per_image.items()},
              "fid": fid, "per_image": "scores.jsonl"}
    rows = [{**{k: it[k] for k in ("index", "image_id", "annotation_id", "caption")},
             "file": str(p.relative_to(out)), "seed": seed + it["index"],
             **{name: s[it["index"]] for name, s in per_image.items()}} for it, p in zip(items, paths)]
    write_text(out / "scores.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_json(out / "results.json", result)
    write_text(out / "results.md", results_markdown([result]) + "\n")
    return result


def coco_keywords(args) -> dict:
    """The CLI adapter: `agsm eval coco`'s parsed options as evaluate_coco's keywords."""
    return {**model_keywords(args), "coco": args.coco, "out": args.out, "num": args.num,
            "caption_order": args.caption_order, "metrics": args.metrics, "inception": args.inception,
            "fid_reference": args.fid_reference, "batch_size": args.batch_size,
            "metric_batch_size": args.metric_batch_size, "label": args.label}


def _draw(run: ResumableRun, items: list[dict], identity: dict, steps, guidance, size, batch_size: int) -> Sampler:
    """Generate every image that the manifest does not hold yet; returns the sampler used."""
    done = run.entries
    todo = [it for it in items if it["index"] not in done]
    if not todo and run.sampler is not None:  # all drawn: the sampler is the recorded one, no model load
        run.check_given({"steps": steps, "guidance": guidance, "size": size}, held=run.sampler)
        return Sampler(**run.sampler)
    pipe, sampler = open_pipeline(identity["model"], identity["tokens"], identity["uncond_tokens"],
                                  identity["device"], identity["dtype"], steps, guidance, size,
                                  variant=identity["variant"])
    run.resolve({"sampler": sampler_dict(sampler)})
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be >= 1")
    seed = identity["seed"]
    log.info("%d of %d images to draw (%d already in %s)", len(todo), len(items), len(items) - len(todo),
             run.out / run.items_dir)
    bar = progress(total=len(todo), desc="eval coco: generating", unit="img")
    for batch, images in draw_batches(pipe, [it["caption"] for it in todo], [seed + it["index"] for it in todo],
                                      steps=sampler.steps, guidance=sampler.guidance, batch_size=batch_size,
                                      size=sampler.size, t5_free_fast=False):
        for it, image in zip((todo[i] for i in batch), images):
            name = f"{it['image_id']:012d}.png"
            write_png(run.out / run.items_dir / name, image)
            run.record([{"index": it["index"], "image_id": it["image_id"], "caption": it["caption"],
                         "seed": seed + it["index"], "file": name}])
            bar.update(1)
    bar.close()
    return sampler


def _scores(name, weights, paths, prompts, out: Path, scoring: dict, metric_loader) -> list[float]:
    """Scores of one metric, reused from OUT/scores/NAME.json when the same weights scored the same files."""
    cache = out / "scores" / f"{name}.json"
    key = {"weights": str(Path(weights).resolve()), "files": [p.name for p in paths]}
    if cache.is_file():
        held = json.loads(cache.read_text())
        if {k: held.get(k) for k in key} == key:
            log.info("%s: reusing %s", name, cache)
            return held["scores"]
    metric = metric_loader(name, weights, scoring["device"], scoring["dtype"], scoring["batch_size"])
    scores = score_files(metric, paths, prompts)
    cache.parent.mkdir(exist_ok=True)
    write_json(cache, {**key, "scores": scores})
    return scores


def _fid(coco, inception, fid_reference, items, paths, size: int, out: Path, extractor, scoring: dict) -> dict | None:
    if extractor is None and not inception:
        log.warning("no --inception weights given: FID skipped")
        return None
    from ..metrics.fid import FeatureStats, compute_stats, fid_from_stats, inception_extractor

    extractor = extractor or inception_extractor(inception, scoring["device"])
    ref_path = Path(fid_reference or out / f"fid_reference_{size}px_{len(items)}.npz")
    if ref_path.is_file():
        log.info("FID reference statistics from %s", ref_path)
        reference = FeatureStats.load(ref_path)
    else:
        log.info("FID reference: %d val2017 images, centre-cropped and resized to %d px", len(items), size)
        val = CroppedImages(reference_paths(coco, items), size)
        reference = compute_stats(val, extractor, scoring["batch_size"])
        tmp = ref_path.with_name(f".{ref_path.name}.tmp")
        reference.save(tmp)
        tmp.replace(ref_path)  # a cache file is always complete
    generated = compute_stats(paths, extractor, scoring["batch_size"])
    return {"value": float(fid_from_stats(generated, reference)), "n": generated.n, "reference": str(ref_path),
            "reference_n": reference.n}


def results_markdown(results: list[dict]) -> str:
    """docs/method.md's COCO table: one row per results dict, columns for the metrics any of them has."""
    columns = [(key, title, factor) for key, title, factor in COLUMNS
               if any((r["fid"] is not None) if key == "fid" else key in r["metrics"] for r in results)]
    rows = []
    for r in results:
        cells = [r["label"]]
        for key, _, factor in columns:
            value = (r["fid"] or {}).get("value") if key == "fid" else r["metrics"].get(key, {}).get("mean")
            cells.append(fixed(None if value is None else value * factor, 2))
        rows.append(cells)
    table = markdown_table(["model", *(title for _, title, _ in columns)], rows)
    return table + f"\n\nCOCO val{results[0]['n']} (first caption per image), n = {results[0]['n']}."


def add_commands(eval_subparsers) -> None:
    p = eval_subparsers.add_parser("coco", help="COCO val5K: generate, score (ImageReward, PickScore, CLIP, HPSv2, "
                                                "aesthetic) and FID; resumable")
    add_model_args(p)
    p.add_argument("--coco", required=True, help="folder with annotations/captions_val2017.json and val2017/*.jpg")
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=5000, help="the first N val2017 images by id (default 5000)")
    p.add_argument("--caption-order", default="json", choices=ORDERS,
                   help="which caption is first: as the json lists them (default) or the lowest annotation id")
    p.add_argument("--metrics", nargs="+", action="extend", metavar="NAME=PATH",
                   help="metrics and their local weights, e.g. clip=DIR pickscore=DIR imagereward=DIR hpsv2=DIR")
    p.add_argument("--inception", help="FID Inception weights (pytorch-fid's pt_inception-2015-12-05 file)")
    p.add_argument("--fid-reference", help="cache of the val2017 reference statistics (.npz); made if missing")
    p.add_argument("--batch-size", type=int, default=4, help="images per generation call")
    p.add_argument("--metric-batch-size", type=int, default=16)
    p.add_argument("--label", help="row name in results.md (default: the token file or model name)")
    p.set_defaults(run=report_command("coco", evaluate_coco, results_markdown, coco_keywords))

