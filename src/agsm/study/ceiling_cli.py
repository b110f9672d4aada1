"""`agsm ceiling`: the method's ceiling on a model (agsm.study.ceiling), one setting per call.

    agsm ceiling --model src/agsm/shapes/models/sd15-tiny --prompts dev --negatives hard --gamma 1 \\
        --temperature 0.1 --where conditional --out runs/ceiling
"""
from __future__ import annotations


def add_command(subparsers) -> None:
    from ..cli_options import GUIDANCE_HELP, STEPS_HELP, add_sampler_options
    from ..guidance import DEFAULT_K, NEGATIVE_KINDS, WHERE
    from ..utils.devices import add_device_options

    cmd = subparsers.add_parser(
        "ceiling", help="the method's ceiling: the ShapesWorld suite sampled with AGSM's target applied by the frozen "
                        "model, against the base at the same seeds (docs/alignment_guidance.md)")
    cmd.add_argument("--model", required=True, help="a model folder (UNet: SD1.5, SDXL; MM-DiT: SD3)")
    cmd.add_argument("--prompts", default="dev",
                     help="dev (the study's development suite, default), test (the shipped suite) or a suite JSONL")
    cmd.add_argument("--negatives", choices=NEGATIVE_KINDS, default="hard",
                     help="hard: one-attribute perturbations of each prompt (default); inbatch: other prompts of the "
                          "suite")
    cmd.add_argument("--gamma", type=float, default=1.0, help="the shift's weight (default 1)")
    cmd.add_argument("--temperature", type=float, default=0.1, help="softmax temperature (default 0.1)")
    cmd.add_argument("--where", choices=WHERE, default="conditional",
                     help="conditional: shift the conditional prediction before guidance (where tokens act; "
                          "default); after-guidance: add gamma D to the guided prediction")
    cmd.add_argument("--k", type=int, default=DEFAULT_K, help=f"the prompt plus K-1 negatives (default {DEFAULT_K})")
    cmd.add_argument("--reward-space", choices=("target", "velocity"), default="target",
                     help="where the rewards' errors are measured, as the objective's method.reward_space")
    add_sampler_options(cmd, steps_help=STEPS_HELP + "; the shipped models recommend 25",
                        guidance_help=GUIDANCE_HELP + "; the shipped models recommend sd15 6, sd3 5")
    cmd.add_argument("--per-category", type=int, help="only the first N prompts of each category")
    cmd.add_argument("--seed", type=int, default=0, help="added to each suite line's own image seed (default 0)")
    cmd.add_argument("--images-per-prompt", type=int, default=1, help="images of each prompt (default 1)")
    cmd.add_argument("--batch-size", type=int, default=50, help="images per pipeline call (default 50)")
    cmd.add_argument("--timing-images", type=int, default=8,
                     help="images timed each way for the cost per image (default 8; 0: not timed)")
    cmd.add_argument("--out", required=True,
                     help="folder for the evaluations (base/, ceiling/) and each setting's report (<setting>.json, .md)")
    add_device_options(cmd)
    cmd.set_defaults(run=_run)


def _run(args, extra) -> None:
    from .ceiling import report_markdown, run_ceiling

    if extra:
        raise ValueError(f"unknown arguments {extra}; see agsm ceiling -h")
    report = run_ceiling(args.model, args.out, prompts=args.prompts, negatives=args.negatives, gamma=args.gamma,
                         temperature=args.temperature, where=args.where, guidance=args.guidance,
                         per_category=args.per_category, seed=args.seed, k=args.k, steps=args.steps,
                         reward_space=args.reward_space, images_per_prompt=args.images_per_prompt,
                         batch_size=args.batch_size, timing_images=args.timing_images, device=args.device,
                         dtype=args.dtype)
    print(report_markdown(report))
    print(f"wrote {report['key']}.json and .md to {args.out}")
