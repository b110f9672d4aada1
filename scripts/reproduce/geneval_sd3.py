#!/usr/bin/env python
"""GenEval on SD3: the base model, SoftREPA tokens and AGSM tokens, per GenEval tag, beside the published numbers
(docs/method.md, "Published results"). Writes OUT/table.md and OUT/table.json.

GenEval's scorer (an object detector) is not part of agsm: this script trains the tokens, draws GenEval's prompts
into GenEval's folder layout (`agsm eval geneval-export`, OUT/geneval/<method>/), writes OUT/geneval/score.sh with
the commands that score each folder with GenEval's own evaluation/evaluate_images.py, and fills the table from the
results files those commands write (OUT/geneval/<method>-results.jsonl, or --results METHOD=FILE). Run it once,
run score.sh in GenEval's environment, run it again: the second run skips the finished stages and reads the scores.

Real size, one GPU:

    python scripts/reproduce/geneval_sd3.py --out runs/geneval \\
        --model sd3=/models/stable-diffusion-3-medium-diffusers \\
        --train-images /data/coco/train2017 --train-captions /data/coco/annotations/captions_train2017.json \\
        --metadata /src/geneval/prompts/evaluation_metadata.jsonl --geneval-repo /src/geneval \\
        --detector /models/geneval-detector --device cuda

It trains the recipes sd3-softrepa and sd3 (AGSM) into RUNS/sd3-softrepa and RUNS/sd3-agsm (the same runs
coco_table1.py trains: give both scripts one --runs folder and they are trained once). Rough cost on one H100, an
estimate and not a measurement: the two SD3 trainings dominate (100k and 59k steps, some 35 GPU-hours); 553
prompts x 4 images x 3 rows at 1024 px, 28 steps, add about 5 GPU-hours; GenEval's scoring well under one.

Smoke (CPU, seconds; toy models, and a brightness stand-in writes the results files GenEval's scorer would):

    python scripts/reproduce/geneval_sd3.py --smoke --out /tmp/geneval
"""
from __future__ import annotations

import shlex
import shutil

import _common
import _resume
import _smoke

METHODS = ("base", "softrepa", "agsm")


def main(argv=None) -> None:
    p = _common.parser(*__doc__.split("\n\n", 1))
    p.add_argument("--model", action="append", default=[], metavar="sd3=DIR", help="the SD3 diffusers folder")
    p.add_argument("--tokens", action="append", default=[], metavar="METHOD=FILE",
                   help="evaluate this token file instead of training it: softrepa= or agsm=")
    p.add_argument("--metadata", help="GenEval's prompts/evaluation_metadata.jsonl")
    p.add_argument("--images-per-prompt", type=int, default=4, help="GenEval's default: 4")
    p.add_argument("--results", action="append", default=[], metavar="METHOD=FILE",
                   help="GenEval's results.jsonl for a row (default OUT/geneval/<method>-results.jsonl)")
    p.add_argument("--geneval-repo", default="geneval", help="GenEval's checkout, for the commands in score.sh")
    p.add_argument("--detector", help="GenEval's --model-path (its object detector's weights), for the commands in "
                                      "score.sh (default: $GENEVAL_DETECTOR when score.sh runs)")
    args = p.parse_args(argv)
    _common.settle(args, ("sd3",), _smoke_inputs)
    model = _common.named_paths(args.model, "--model", ("sd3",)).get("sd3")
    given = _common.named_paths(args.tokens, "--tokens", METHODS[1:])
    results = _common.named_paths(args.results, "--results", METHODS)
    if model is None or not args.metadata:
        raise SystemExit("give --model sd3=DIR and --metadata FILE (or --smoke)")

    from agsm.eval.geneval import export_geneval, read_metadata
    from agsm.report.paper_tables import geneval_numbers

    read_metadata(args.metadata)  # checked before hours of training
    plan = _common.Plan("geneval", args.out)
    tokens = {"base": None}
    for method in METHODS[1:]:
        recipe = "sd3" if method == "agsm" else f"sd3-{method}"
        tokens[method] = given.get(method) or _common.train_run(plan, args, recipe, f"sd3-{method}", model)
    folder = args.out / "geneval"
    score_lines = [f"cd {shlex.quote(str(args.geneval_repo))}"]
    ours, sources = {}, {}
    for method, token_file in tokens.items():
        export = folder / method
        inputs = _resume.fingerprint(token_file)
        afresh = plan.record.changed(export, inputs)  # the tokens were trained further: draw them again
        plan.stage(f"draw GenEval's prompts with sd3 {method} (a partial folder resumes)",
                   ["agsm", "eval", "geneval-export", "--model", model,
                    *(["--tokens", token_file] if token_file else []),
                    "--metadata", args.metadata, "--out", export, "--images-per-prompt", args.images_per_prompt,
                    *(["--steps", args.sample_steps] if args.sample_steps else []), "--batch-size", args.batch_size,
                    "--seed", args.seed, "--device", args.device, "--dtype", args.dtype], finished=False, afresh=afresh)
        if afresh:  # agsm would resume a folder of the same settings; the token file behind the path changed
            shutil.rmtree(export, ignore_errors=True)
        export_geneval(model=model, metadata=args.metadata, out=export, tokens=token_file,
                       images_per_prompt=args.images_per_prompt, batch_size=args.batch_size, steps=args.sample_steps,
                       seed=args.seed, device=args.device, dtype=args.dtype)
        plan.record.remember(export, inputs)
        scored = results.get(method, folder / f"{method}-results.jsonl")
        if afresh and method not in results and scored.is_file():  # GenEval scored the images drawn before
            scored.rename(scored.with_suffix(".stale"))
            print(f"    {scored} scored the images drawn before: moved to {scored.with_suffix('.stale')}")
        detector = shlex.quote(str(args.detector)) if args.detector else '"${GENEVAL_DETECTOR:?its folder}"'
        score_lines.append(shlex.join(["python", "evaluation/evaluate_images.py", str(export.resolve()), "--outfile",
                                       str(scored.resolve())]) + f" --model-path {detector}")
        if args.smoke and not scored.is_file():
            _smoke.stand_in_geneval_results(export, scored)
        sources[f"sd3/{method}"] = {"images": str(export), "results": str(scored),
                                    "tokens": str(token_file) if token_file else None}
        if scored.is_file():
            ours[f"sd3/{method}"] = geneval_numbers(scored)
    (folder / "score.sh").write_text("#!/bin/sh\n# GenEval's scorer, in GenEval's environment\nset -e\n"
                                     + "\n".join(score_lines) + "\n")
    _common.write("geneval", ours, sources, args.out)
    missing = [m for m in METHODS if f"sd3/{m}" not in ours]
    if missing:
        print(f"not scored yet: {', '.join(missing)}. Score with GenEval (sh {folder / 'score.sh'}), then run this "
              "command again to fill the table")


def _smoke_inputs(args, inputs) -> None:
    args.model = [f"sd3={inputs['models']['sd3']}"]
    args.metadata = str(inputs["geneval_metadata"])
    args.images_per_prompt = 2


if __name__ == "__main__":
    _common.run(main)
