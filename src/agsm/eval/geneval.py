"""`agsm eval geneval-export`: images for GenEval's prompts in GenEval's folder layout, to be scored by the
official GenEval scorer elsewhere (it needs an object detector this project does not ship).

    agsm eval geneval-export --model /models/sd3 --tokens runs/sd3-agsm \
        --metadata geneval/prompts/evaluation_metadata.jsonl --out runs/geneval-agsm

For prompt i (line i of the metadata file) it writes OUT/<i:05d>/metadata.jsonl (that line, as given) and
OUT/<i:05d>/samples/<j:04d>.png for j < --images-per-prompt, image j of prompt i drawn with seed + i * N + j
(N = images per prompt). Images are written atomically; a folder with all its samples is skipped when the command
runs again, so a killed export resumes. OUT/config.json records the settings (agsm.eval.resumable; folders written
before hold export.json, still read); GenEval's scorer reads only the numbered folders. Then, with GenEval:
python evaluation/evaluate_images.py OUT --outfile results.jsonl ...
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..draw import draw_batches
from ..utils.atomic_files import write_png
from ..utils.devices import resolve_device_and_dtype
from ..utils.progress import progress
from .generation import add_model_args, model_keywords, open_pipeline, run_config, sampler_dict
from .resumable import RunRecord

log = logging.getLogger(__name__)


def read_metadata(path) -> list[tuple[str, dict]]:
    """[(the line as written, its parsed object)] for each non-empty line; each must have a 'prompt'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--metadata {path} does not exist; GenEval ships it as "
                                "prompts/evaluation_metadata.jsonl")
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {number} is not JSON ({exc}); expected GenEval's metadata jsonl") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("prompt"), str):
            raise ValueError(f"{path} line {number} has no 'prompt' string; expected GenEval's metadata jsonl")
        lines.append((line.strip(), meta))
    if not lines:
        raise ValueError(f"{path} holds no prompts")
    return lines


def export_geneval(*, model, metadata, out, tokens=None, uncond_tokens: str = "positive",
                   images_per_prompt: int = 4, batch_size: int = 4, steps=None, guidance=None, size=None,
                   seed: int = 0, device: str = "auto", dtype="auto", variant=None, overwrite: bool = False) -> dict:
    """Draw every missing sample (options as `agsm eval geneval-export`'s); returns {'prompts', 'images', 'drawn'}
    counts. A folder holding other settings is refused, or with `overwrite` started afresh (agsm.eval.resumable)."""
    resolve_device_and_dtype(device, dtype)  # a device this machine lacks fails first
    if images_per_prompt < 1:
        raise ValueError(f"--images-per-prompt {images_per_prompt} must be >= 1")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} must be >= 1")
    lines = read_metadata(metadata)
    out = Path(out)
    per = images_per_prompt
    # GenEval's layout has no manifest: a sample is done when its file is there (each written atomically)
    run = RunRecord(out, run_config(model, tokens, uncond_tokens, seed, device, dtype, variant, images_per_prompt=per,
                                    metadata=str(Path(metadata).resolve())),
                    overwrite=overwrite, clear=lambda: [shutil.rmtree(_folder(out, i), ignore_errors=True)
                                                        for i in range(len(lines))])
    todo = {i: [j for j in range(per) if not (_folder(out, i) / "samples" / f"{j:04d}.png").is_file()]
            for i in range(len(lines))}
    todo = {i: js for i, js in todo.items() if js}
    log.info("%d of %d prompt folders to complete in %s", len(todo), len(lines), out)
    pipe = sampler = None
    with progress(total=sum(len(js) for js in todo.values()), desc="geneval export", unit="img") as bar:
        for i, samples in todo.items():
            if pipe is None:  # loaded only when a sample is missing
                pipe, sampler = open_pipeline(model, tokens, uncond_tokens, device, dtype, steps, guidance, size,
                                              variant=variant)
                run.resolve({"sampler": sampler_dict(sampler)})
            folder = _folder(out, i)
            (folder / "samples").mkdir(parents=True, exist_ok=True)
            (folder / "metadata.jsonl").write_text(lines[i][0] + "\n")
            prompt = lines[i][1]["prompt"]
            for batch, images in draw_batches(pipe, [prompt] * len(samples), [seed + i * per + j for j in samples],
                                              steps=sampler.steps, guidance=sampler.guidance, batch_size=batch_size,
                                              size=sampler.size, t5_free_fast=False):
                for k, image in zip(batch, images):
                    write_png(folder / "samples" / f"{samples[k]:04d}.png", image)
                bar.update(len(batch))
    return {"prompts": len(lines), "images": len(lines) * per, "drawn": sum(len(js) for js in todo.values())}


def geneval_keywords(args) -> dict:
    """The CLI adapter: `agsm eval geneval-export`'s parsed options as export_geneval's keywords."""
    return {**model_keywords(args), "metadata": args.metadata, "out": args.out,
            "images_per_prompt": args.images_per_prompt, "batch_size": args.batch_size}


def _folder(out: Path, index: int) -> Path:
    return out / f"{index:05d}"


def add_commands(eval_subparsers) -> None:
    p = eval_subparsers.add_parser("geneval-export", help="images for GenEval's prompts in its folder layout "
                                                          "(score them with the official GenEval scorer)")
    add_model_args(p)
    p.add_argument("--metadata", required=True, help="GenEval's prompts/evaluation_metadata.jsonl")
    p.add_argument("--out", required=True, help="folder for GenEval's layout: <prompt index>/samples/<j>.png")
    p.add_argument("--images-per-prompt", type=int, default=4, help="samples per prompt (default 4, GenEval's)")
    p.add_argument("--batch-size", type=int, default=4, help="images per generation call")
    p.set_defaults(run=_run)


def _run(args, extra) -> None:
    if extra:
        raise ValueError(f"agsm eval geneval-export: unknown arguments {extra}")
    counts = export_geneval(**geneval_keywords(args))
    from ..utils.counts import count

    print(f"{count(counts['prompts'], 'prompt')} x {count(args.images_per_prompt, 'image')} in {args.out} "
          f"({counts['drawn']} drawn now); score them with GenEval's evaluation/evaluate_images.py")
