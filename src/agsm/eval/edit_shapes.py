"""`agsm eval edit-shapes`: the ShapesWorld editing benchmark, judged exactly.

    agsm eval edit-shapes --model src/agsm/shapes/models/sd15-tiny --tokens runs/demo/sd15/agsm --n 60 --out runs/edit-eval

Deterministic rendered scenes of 1-3 distinct objects, each with a caption naming every object
("a red circle and a blue square"; three objects join three phrases with "and"), and one edit that
changes ONE object's colour or shape (cases alternate colour and shape edits over 1, 2 and 3 objects).
Each edit is run with the model's editing method (agsm.editing.edit), base and, given --tokens, with
tokens (same seeds), and scored:
- success: the ShapesWorld judge accepts the edited image for the target caption (GenEval rules:
  every named object present, extra objects allowed);
- clean: success, every untouched object still found in place and the old object gone from its place;
- PSNR against the source, over the whole image and outside the edited object's box (grown by 2 px);
- objects kept: the share of untouched objects that the detector finds with the same shape and colour
  and a centre within 3 px of where it was.
The VAE round trip of each source (encode, decode) is reported as the preservation ceiling.
Writes results.json (settings, summaries, every case), results.md, timing.json (seconds per variant) and grid.png
(source | base | tokens). Each finished edit is saved (edits/) and recorded in manifest.jsonl, so a killed run,
started again with the same arguments, redoes only the missing edits and writes a byte-identical results.json.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

from ..utils.atomic_files import write_json, write_png, write_text
from ..utils.devices import add_device_options, dtype_name, resolve_device_and_dtype
from ..utils.markdown_tables import fixed, table_lines
from ..editing import edit, edit_options
from ..editing.latents import decode_latents, encode_image
from ..editing.preservation import found_in_place, outside_box, psnr
from ..pipelines import load_soft_tokens, unload_soft_tokens
from ..utils.progress import progress as progress_bar
from ..sample import default_size, load_pipeline
from ..shapes.detect import detect
from ..shapes.grammar import object_phrase
from ..shapes.render import render
from ..shapes.requirements import ObjectSpec, Requirements
from ..shapes.scenes import place
from ..shapes.spec import CANVAS, COLORS, SHAPES, Scene
from ..shapes.verify import judge
from ..utils.image_grids import framed, grid
from ..tokens.token_file import resolve_token_path
from .resumable import ResumableRun, file_digest, folder_stamp

log = logging.getLogger(__name__)
EDIT_KINDS = ("color", "shape")
MAX_OBJECTS = 3
KEEP_TOLERANCE = 3.0  # px between an untouched object's centre before and after the edit


def describe(objects) -> str:
    """The caption naming every object, in scene order: 'a red circle and a blue square'."""
    return " and ".join(object_phrase(o.shape, o.color) for o in objects)


@dataclass(frozen=True)
class EditCase:
    index: int
    kind: str        # "color" | "shape"
    source: Scene
    target: Scene    # the source with one object changed
    edited: int      # which object

    @property
    def source_prompt(self) -> str:
        return describe(self.source.objects)

    @property
    def target_prompt(self) -> str:
        return describe(self.target.objects)

    @property
    def requirements(self) -> Requirements:
        """What the target caption asks for (the judge's 'every named object present' rule)."""
        objects = self.target.objects
        return Requirements("colors" if len(objects) == 1 else "two_objects",
                            tuple(ObjectSpec(o.shape, o.color) for o in objects))


def _new_value(obj, others, kind: str, rng: random.Random) -> str | None:
    """A different colour (or shape) for obj that no other object has together with obj's other attribute."""
    if kind == "color":
        options = [c for c in COLORS if c != obj.color and (obj.shape, c) not in others]
    else:
        options = [s for s in SHAPES if s != obj.shape and (s, obj.color) not in others]
    return rng.choice(options) if options else None


def make_cases(n: int, seed: int = 0) -> list[EditCase]:
    """n edit cases reproducible from seed: objects 1, 2, 3 in turn, colour and shape edits alternating per three."""
    if n < 1:
        raise ValueError(f"--n {n} must be >= 1")
    rng = random.Random(seed)
    kinds_all = [(s, c) for s in SHAPES for c in COLORS]
    cases = []
    for i in range(n):
        count, kind = 1 + i % MAX_OBJECTS, EDIT_KINDS[(i // MAX_OBJECTS) % len(EDIT_KINDS)]
        while True:  # distinct objects, and an edit that keeps them distinct
            scene = place(rng.sample(kinds_all, count), rng)
            k = rng.randrange(count)
            obj = scene.objects[k]
            value = _new_value(obj, {(o.shape, o.color) for j, o in enumerate(scene.objects) if j != k}, kind, rng)
            if value is not None:
                break
        changed = dataclasses.replace(obj, **{kind: value})
        target = Scene(tuple(changed if j == k else o for j, o in enumerate(scene.objects)))
        cases.append(EditCase(i, kind, scene, target, k))
    return cases


def score_edit(case: EditCase, source_image, edited_image) -> dict:
    """The verdicts and preservation figures of one edited image."""
    found = detect(edited_image)
    ok, reason = judge(case.requirements, found)
    untouched = [o for j, o in enumerate(case.source.objects) if j != case.edited]
    kept = [found_in_place(o, found, KEEP_TOLERANCE) for o in untouched]
    old_gone = not found_in_place(case.source.objects[case.edited], found, KEEP_TOLERANCE)
    box = case.source.objects[case.edited].box
    return {"success": ok, "reason": reason, "clean": ok and all(kept) and old_gone, "old_gone": old_gone,
            "kept": kept, "psnr": psnr(edited_image, source_image),
            "psnr_outside": psnr(edited_image, source_image, outside_box(source_image.size[::-1], box))}


def summarize(records: list[dict]) -> dict:
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    kept = [k for r in records for k in r["kept"]]
    return {"n": len(records), "success": mean([r["success"] for r in records]),
            "clean": mean([r["clean"] for r in records]), "old_gone": mean([r["old_gone"] for r in records]),
            "psnr": mean([r["psnr"] for r in records]), "psnr_outside": mean([r["psnr_outside"] for r in records]),
            "objects_kept": mean(kept), "untouched_objects": len(kept)}


def _groups(records: list[dict]) -> dict:
    groups = {"all": records}
    groups.update({kind: [r for r in records if r["kind"] == kind] for kind in EDIT_KINDS})
    groups.update({f"{k} objects": [r for r in records if r["objects"] == k] for k in range(1, MAX_OBJECTS + 1)})
    return {name: summarize(rs) for name, rs in groups.items() if rs}


def _run_variant(pipe, run: ResumableRun, variant: int, name: str, cases, sources, seed, method, opts,
                 show_progress: bool) -> None:
    """Edit every case the manifest does not hold yet; each edit's image and record are kept as it finishes."""
    done = run.entries
    todo = [(case, source) for case, source in zip(cases, sources) if variant * len(cases) + case.index not in done]
    for case, source in progress_bar(todo, desc=f"edit-shapes {name}", unit="edit", disable=not show_progress):
        start = time.perf_counter()
        image = edit(pipe, source, case.source_prompt, case.target_prompt, seed=seed + case.index,
                     method=method, progress=False, **dataclasses.asdict(opts))
        seconds = time.perf_counter() - start
        index = variant * len(cases) + case.index
        write_png(run.out / run.image_path(index), image)
        run.record([{"index": index, "file": run.image_path(index), "seconds": seconds,
                     "record": {"case": case.index, "kind": case.kind, "objects": len(case.source.objects),
                                "source_prompt": case.source_prompt, "target_prompt": case.target_prompt,
                                "seed": seed + case.index, **score_edit(case, source, image)}}])


def run_edit_benchmark(model, out, tokens=None, n: int = 60, seed: int = 0, method: str | None = None,
                       uncond_tokens: str = "positive", device: str = "cpu", pipe=None, progress: bool = True,
                       dtype="float32", overwrite: bool = False, **options) -> dict:
    """Run every case base (and with tokens), write results.json, results.md, timing.json and grid.png; returns
    the results. A killed run, started again with the same arguments (and precision), redoes only the missing
    edits; a folder holding a run with other settings is refused, or with `overwrite` started afresh
    (agsm.eval.resumable). device / dtype ('auto' allowed) are ignored when `pipe` is given."""
    if pipe is None:
        pipe = load_pipeline(model, *resolve_device_and_dtype(device, dtype))
    if default_size(pipe) != CANVAS:
        raise ValueError(f"{model} draws {default_size(pipe)} px images; the ShapesWorld benchmark needs a "
                         f"{CANVAS} px ShapesWorld model such as src/agsm/shapes/models/sd15-tiny")
    method, opts = edit_options(pipe, method, **options)
    cases = make_cases(n, seed)
    sources = [render(c.source) for c in cases]
    unload_soft_tokens(pipe)
    round_trip = [psnr(decode_latents(pipe, encode_image(pipe, s)), s) for s in sources]
    variants = [("base", None)] + ([("tokens", tokens)] if tokens else [])
    run = ResumableRun(out, {"model": str(Path(model).resolve()), "model_files": folder_stamp(model),
                             "tokens": str(Path(tokens).resolve()) if tokens else None,
                             "tokens_sha256": file_digest(resolve_token_path(tokens)) if tokens else None,
                             "uncond_tokens": uncond_tokens, "n": n, "seed": seed, "method": method,
                             "options": dataclasses.asdict(opts), "dtype": dtype_name(pipe.dtype)},
                       items_dir="edits", resolved_keys=(), overwrite=overwrite)
    results = {"model": str(model), "tokens": str(tokens) if tokens else None, "uncond_tokens": uncond_tokens,
               "n": n, "seed": seed, "method": method, "options": dataclasses.asdict(opts),
               "vae_round_trip_psnr": sum(round_trip) / n, "variants": {}}
    images, timing = {}, {}
    for v, (name, token_path) in enumerate(variants):
        unload_soft_tokens(pipe)
        if token_path:
            load_soft_tokens(pipe, token_path, uncond_tokens=uncond_tokens)
        log.info("edit-shapes: %d edits, %s (%s)", n, name, method)
        _run_variant(pipe, run, v, name, cases, sources, seed, method, opts, progress)
        entries = run.entries
        done = [entries[v * n + c.index] for c in cases]
        images[name] = [run.image(v * n + c.index) for c in cases]
        records = [e["record"] for e in done]
        timing[name] = round(sum(e["seconds"] for e in done), 1)  # edit time, summed over resumed runs
        results["variants"][name] = {"summary": _groups(records), "cases": records}
    unload_soft_tokens(pipe)
    out = Path(out)
    # Times differ from run to run: they go to timing.json, so results.json depends on the inputs alone.
    write_json(out / "results.json", results)
    write_json(out / "timing.json", {"seconds": timing})
    write_text(out / "results.md", results_markdown(results, timing))
    _grid(cases, sources, images, results).save(out / "grid.png")
    return results


def _grid(cases, sources, images, results):
    rows, labels = [], []
    for i, case in enumerate(cases):
        row = [framed(sources[i], None)]
        row += [framed(images[name][i], results["variants"][name]["cases"][i]["success"]) for name in images]
        old, new = case.source.objects[case.edited], case.target.objects[case.edited]
        rows.append(row)
        labels.append(f"{case.index}: {old.color} {old.shape} -> {new.color} {new.shape}")
    return grid(rows, labels=labels, label_width=250)


def results_markdown(results: dict, timing: dict | None = None) -> str:
    lines = [f"# ShapesWorld editing: {results['model']}", "",
             f"{results['n']} edits, seed {results['seed']}, method {results['method']} {results['options']}; "
             f"tokens: {results['tokens'] or 'none'}. VAE round-trip PSNR of the sources (ceiling): "
             f"{results['vae_round_trip_psnr']:.2f} dB.", ""]
    lines += table_lines(["variant", "group", "edits", "success", "clean", "old gone", "PSNR (dB)", "PSNR outside box",
                          "objects kept", "time (s)"],
                         [[name, group, str(s["n"]), fixed(s["success"]), fixed(s["clean"]), fixed(s["old_gone"]),
                           fixed(s["psnr"], 2), fixed(s["psnr_outside"], 2),
                           f"{fixed(s['objects_kept'])} ({s['untouched_objects']})",
                           f"{(timing or {}).get(name, '') if group == 'all' else ''}"]
                          for name, variant in results["variants"].items() for group, s in variant["summary"].items()])
    lines += ["", "success: judged correct for the target caption; clean: success, untouched objects in place and the "
              "old object gone; objects kept: share of untouched objects found in place (their count in brackets). "
              "grid.png columns: source | " + " | ".join(results["variants"]) + " (green frame = success)."]
    return "\n".join(lines) + "\n"


def _run(args, extra) -> None:
    from ..editing.cli import options_from_args

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm eval edit-shapes -h")
    results = run_edit_benchmark(args.model, args.out, tokens=args.tokens, n=args.n, seed=args.seed,
                                 method=args.method, uncond_tokens=args.uncond_tokens, device=args.device,
                                 dtype=args.dtype, overwrite=args.overwrite, **options_from_args(args))
    for name, variant in results["variants"].items():
        s = variant["summary"]["all"]
        print(f"{name:7s} success {s['success']:.3f}  clean {s['clean']:.3f}  PSNR {s['psnr']:.2f} dB  "
              f"outside box {s['psnr_outside']:.2f} dB  objects kept {s['objects_kept']:.3f}")
    print(f"wrote results.json, results.md and grid.png to {args.out}")


def add_commands(eval_subparsers) -> None:
    """Register `agsm eval edit-shapes` on the `agsm eval` sub-command parsers."""
    from ..cli_options import SHAPES_PIPELINE_HELP, add_model_options, add_overwrite_option
    from ..editing.cli import add_edit_options

    p = eval_subparsers.add_parser("edit-shapes", help="ShapesWorld editing benchmark, judged exactly")
    add_model_options(p, model_help=SHAPES_PIPELINE_HELP,
                      tokens_help="soft_tokens.safetensors (or its folder): runs base and tokens, same seeds")
    p.add_argument("--out", required=True, help="folder for results.json, results.md, timing.json, grid.png, edits/")
    p.add_argument("--n", type=int, default=60, help="edit cases (default 60)")
    p.add_argument("--seed", type=int, default=0,
                   help="the scenes are drawn from it; case i's edit noise uses seed + i (default 0)")
    add_device_options(p)
    add_edit_options(p)
    add_overwrite_option(p)
    p.set_defaults(run=_run)
