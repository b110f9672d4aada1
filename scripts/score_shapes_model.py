"""Score a ShapesWorld pipeline (sd15-tiny or sd3-tiny) on the evaluation suite and write the scores as JSON.

    python scripts/score_shapes_model.py --model src/agsm/shapes/models/sd15-tiny \
        [--out MODEL/suite_scores.json] [--images-per-prompt 1] [--seed 0] [--grid grid.png]
        [--steps N] [--guidance G]   (default: the model's recommended sampler, agsm.backbones.sampler_defaults)
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image

from agsm.cli_options import SHAPES_PIPELINE_HELP, add_model_options, add_sampler_options
from agsm.sample import load_pipeline
from agsm.shapes.evaluate import score_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, model_help=SHAPES_PIPELINE_HELP, tokens=False, uncond_tokens=False)
    parser.add_argument("--out", default=None)
    parser.add_argument("--images-per-prompt", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    add_sampler_options(parser)
    parser.add_argument("--grid", default=None, help="also save the images as one PNG grid, a row per category")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model)  # the folder's own scheduler: DDIM for sd15-tiny, flow Euler for sd3-tiny
    t0 = time.time()
    result = score_suite(pipe, images_per_prompt=args.images_per_prompt, seed=args.seed, steps=args.steps,
                         guidance=args.guidance, return_images=bool(args.grid))
    result["seconds"] = round(time.time() - t0, 1)
    images = result.pop("images", None)
    out = Path(args.out or Path(args.model) / "suite_scores.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("accuracy", "mean", "overcount_rate", "sampler", "seconds")}, indent=2))
    if images:
        cols = 50 * args.images_per_prompt
        rows = (len(images) + cols - 1) // cols
        grid = Image.new("RGB", (64 * cols, 64 * rows), "white")
        for i, im in enumerate(images):
            grid.paste(im, (64 * (i % cols), 64 * (i // cols)))
        grid.save(args.grid)


if __name__ == "__main__":
    main()
