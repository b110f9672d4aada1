"""How closely FlowEdit returns its input when the source and target prompts are the same (a zero edit).

    python scripts/measure_flowedit_identity.py --model src/agsm/shapes/models/sd3-tiny --n 12

For each of n rendered ShapesWorld scenes (the edit benchmark's sources), FlowEdit runs with target = source
prompt, once with equal guidance (the two velocities then cancel, so the result is the VAE round trip) and once
with the paper's 3.5 / 13.5 (they do not cancel: the difference is 10 (cond - uncond)). Prints mean PSNR
against the input and against the VAE round trip, and the round trip's own PSNR.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from agsm.cli_options import add_model_options
from agsm.editing import edit
from agsm.editing.latents import decode_latents, encode_image
from agsm.editing.preservation import psnr
from agsm.eval.edit_shapes import make_cases
from agsm.sample import load_pipeline
from agsm.shapes.render import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, model_help="a 64 px ShapesWorld pipeline folder of FlowEdit's architecture, SD3 (e.g. "
                                         "src/agsm/shapes/models/sd3-tiny)", tokens=False, uncond_tokens=False)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    rows = {"round_trip_vs_input": [], "equal_guidance_vs_input": [], "equal_guidance_vs_round_trip": [],
            "paper_guidance_vs_input": [], "paper_guidance_vs_round_trip": []}
    for case in make_cases(args.n, args.seed):
        image = render(case.source)
        with torch.no_grad():
            round_trip = decode_latents(pipe, encode_image(pipe, image))
        equal = edit(pipe, image, case.source_prompt, case.source_prompt, seed=args.seed + case.index,
                     source_guidance=3.5, target_guidance=3.5, progress=False)
        paper = edit(pipe, image, case.source_prompt, case.source_prompt, seed=args.seed + case.index, progress=False)
        rows["round_trip_vs_input"].append(psnr(round_trip, image))
        rows["equal_guidance_vs_input"].append(psnr(equal, image))
        rows["equal_guidance_vs_round_trip"].append(psnr(equal, round_trip))
        rows["paper_guidance_vs_input"].append(psnr(paper, image))
        rows["paper_guidance_vs_round_trip"].append(psnr(paper, round_trip))
    summary = {k: round(float(np.mean(v)), 2) for k, v in rows.items()}
    print(json.dumps({"model": args.model, "n": args.n, "mean_psnr_db": summary}, indent=2))


if __name__ == "__main__":
    main()
