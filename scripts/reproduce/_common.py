"""What the reproduction scripts share: their common options, the stage printer, training a shipped recipe, the
COCO and PIE-Bench evaluations, and writing the table (agsm.report.paper_tables holds its layout and numbers).

Every stage calls agsm's own function for an agsm command (agsm.training.loop.train for `agsm train`,
agsm.eval.coco.evaluate_coco for `agsm eval coco`, ...) and first prints that command, so any stage can also be
run by hand, e.g. under `accelerate launch` on several GPUs: a run it finished is then skipped here. Which stages
are skipped, resumed or started afresh: _resume.py. agsm's runs and evaluation folders resume where they stopped
and refuse a folder made with other settings.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

import _resume
import _smoke


def parser(description: str, epilog: str) -> argparse.ArgumentParser:
    """The options every script has (the data and weights each table needs are added by the script)."""
    p = argparse.ArgumentParser(description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for the evaluations, table.md and table.json")
    p.add_argument("--runs", type=Path, help="folder of the training runs (default OUT/runs); give several scripts "
                                             "the same one and a run trained by one is reused by the others")
    p.add_argument("--smoke", action="store_true", help="the whole pipeline at toy size on random toy models and "
                                                        "tiny fake data built under OUT/smoke-inputs (seconds, CPU)")
    p.add_argument("--config", action="append", default=[], metavar="RECIPE=FILE",
                   help="train RECIPE (e.g. sdxl-softrepa) from FILE instead of the shipped config of that name")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", dest="train_set",
                   help="a config option for every training run, e.g. train.mixed_precision=fp16")
    p.add_argument("--train-steps", type=int, help="train.steps for every run (default: each recipe's)")
    p.add_argument("--train-images", type=Path, help="training images: COCO's train2017 folder (or an image folder "
                                                     "with metadata.jsonl)")
    p.add_argument("--train-captions", type=Path, help="COCO's annotations/captions_train2017.json")
    p.add_argument("--num", type=int, default=5000, help="COCO evaluation prompts (default 5000: val5K)")
    p.add_argument("--sample-steps", type=int, help="sampler steps (default: each model's evaluation sampler)")
    p.add_argument("--batch-size", type=int, default=4, help="images per generation call")
    p.add_argument("--seed", type=int, default=0, help="image i is drawn with seed + i")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--dtype", default="auto", help="sampling precision: auto, float32, bfloat16, float16")
    p.add_argument("--debug", action="store_true", help="show an error's traceback instead of one line")
    return p


def run(main) -> None:
    """Run a script's main as `agsm` runs a command: log lines on, a user error as one line and exit status 2."""
    from agsm.cli import USER_ERRORS
    from agsm.errors import AgsmError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("accelerate", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main(sys.argv[1:])
    except (*USER_ERRORS, AgsmError) as exc:
        if "--debug" in sys.argv:
            raise
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def named_paths(values: list[str], option: str, allowed) -> dict[str, Path]:
    """['sd15=/models/sd15', ...] -> {'sd15': Path}, names checked against `allowed`."""
    out = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not path:
            raise SystemExit(f"{option} {value!r} must be NAME=PATH, e.g. {option} {sorted(allowed)[0]}=/models/x")
        if name not in allowed:
            raise SystemExit(f"{option} {value!r}: {name!r} is not one of {', '.join(sorted(allowed))}")
        out[name] = Path(path)
    return out


def settle(args, architectures, smoke_overrides) -> dict:
    """Fill what --smoke replaces (the toy models, data and weights; small sizes), resolve the folders; returns
    the smoke inputs ({} on a real run). `smoke_overrides(args, inputs)` sets the script's own inputs."""
    args.runs = args.runs or args.out / "runs"
    args.configs = named_paths(args.config, "--config", _recipes())
    inputs = {}
    if args.smoke:
        print(f"--smoke: toy models and fake data in {args.out / 'smoke-inputs'} (numbers mean nothing)")
        inputs = _smoke.prepare(args.out / "smoke-inputs", architectures)
        args.train_images, args.train_captions = inputs["train_images"], inputs["train_captions"]
        args.num, args.sample_steps, args.batch_size = (_smoke.EVAL[k] for k in ("num", "steps", "batch_size"))
        args.device, args.dtype = "cpu", "float32"
        smoke_overrides(args, inputs)
    return inputs


class Plan:
    """Numbers and prints the stages, each with the agsm command it amounts to and whether it is skipped; keeps
    the record of what each stage's folder was made from (_resume.InputRecord)."""

    def __init__(self, name: str, out: Path):
        self.name, self.count, self.record = name, 0, _resume.InputRecord(out)

    def stage(self, what: str, command: list, finished: bool, afresh: bool = False) -> bool:
        """Print the stage; True when it must run."""
        self.count += 1
        state = (": finished earlier, skipped" if finished
                 else ": its inputs changed, folder cleared and started afresh" if afresh else "")
        print(f"[{self.name} {self.count}] {what}{state}\n    $ {shlex.join(str(c) for c in command)}", flush=True)
        return not finished


def train_run(plan: Plan, args, recipe: str, name: str, model, *, data=None, denoiser=None, lora=None) -> Path:
    """Train the shipped recipe (or --config's file for it) into RUNS/name, or skip the finished run; returns what it
    exported: the token file, or the tuned denoiser's folder (preference methods). `data`: the data options,
    default the COCO training images and captions."""
    from agsm.training.checkpoint import latest_checkpoint
    from agsm.training.config import load_config
    from agsm.training.loop import train
    from agsm.utils.devices import accelerate_device

    out = args.runs / name
    source = str(args.configs.get(recipe, recipe))
    overrides = ["--model.path", str(model), *(["--model.denoiser", str(denoiser)] if denoiser else []),
                 *(["--model.lora", str(lora)] if lora else []), *(coco_train_data(args) if data is None else data),
                 "--train.output_dir", str(out), *_train_overrides(args, recipe)]
    try:
        config = load_config(source, overrides)
    except ValueError as exc:
        if "neither a file nor a shipped config" not in str(exc):
            raise
        raise SystemExit(f"recipe {recipe}: {exc}. Give its file with --config {recipe}=FILE") from None
    inputs = _resume.fingerprint(denoiser, lora)
    afresh = plan.record.changed(out, inputs)  # the backbone it trains on was trained further: start over
    done = None if afresh else _resume.finished_run(out, config)
    resume = not afresh and latest_checkpoint(out) is not None
    flag = ["--overwrite"] if afresh else ["--resume"] if resume else []
    if plan.stage(f"train {name} ({recipe})", ["agsm", "train", "--config", source, *overrides, *flag],
                  done is not None, afresh):
        with accelerate_device(args.device):
            done = Path(train(config, resume=resume, overwrite=afresh))
    plan.record.remember(out, inputs)
    return done


def coco_train_data(args) -> list[str]:
    if not args.train_images:
        raise SystemExit("training needs --train-images (COCO train2017) and --train-captions "
                         "(annotations/captions_train2017.json)")
    return ["--data.path", str(args.train_images),
            *(["--data.captions", str(args.train_captions)] if args.train_captions else [])]


def coco_eval(plan: Plan, args, out: Path, label: str, *, model, coco, metrics: dict, tokens=None, variant=None,
              inception=None, fid_reference=None, fid: bool = True) -> dict:
    """`agsm eval coco` into `out`, or its finished results.json; FID needs `inception` (--smoke: a stand-in,
    unless `fid` is False)."""
    from agsm.eval.coco import evaluate_coco

    fid = bool(inception) or (fid and args.smoke)
    command = ["agsm", "eval", "coco", *_model_flags(model, tokens, variant), "--coco", coco, "--out", out,
               "--num", args.num, "--metrics", *(f"{k}={v}" for k, v in metrics.items()), *_sampling_flags(args),
               *(["--inception", inception] if inception else []),
               *(["--fid-reference", fid_reference] if fid_reference else [])]

    def complete(results):
        return (results["n"] == args.num and set(metrics) <= set(results["metrics"])
                and (results.get("fid") is not None or not fid))

    def evaluate() -> dict:
        extractor = _smoke.fid_stand_in if args.smoke and fid else None  # no Inception at toy size: pixel means
        return evaluate_coco(model=model, coco=coco, out=out, tokens=tokens, variant=variant, num=args.num,
                             metrics=metrics, inception=inception, fid_reference=fid_reference, label=label,
                             batch_size=args.batch_size, steps=args.sample_steps, seed=args.seed,
                             device=args.device, dtype=args.dtype, metric_loader=metric_loader(),
                             fid_extractor=extractor)
    return _evaluation(plan, args, out, f"evaluate {label} on COCO", command, (model, tokens, variant), complete,
                       evaluate)


def pie_eval(plan: Plan, args, out: Path, label: str, *, model, tokens, method: str, options: dict, pie,
             weights: dict) -> dict:
    """`agsm eval pie-bench` with one editor into `out`, or its finished results.json."""
    from agsm.eval.pie_bench import evaluate_pie
    from agsm.eval.pie_data import read_mapping

    num = args.pie_num
    command = ["agsm", "eval", "pie-bench", *_model_flags(model, tokens), "--pie", pie, "--out", out,
               "--method", method, *(f"--option={k}={v}" for k, v in options.items()),
               *(f"--{k}={v}" for k, v in weights.items() if v), *(["--num", num] if num else []),
               "--seed", args.seed, "--device", args.device, "--dtype", args.dtype]
    entries = len(read_mapping(pie, None, num))

    def evaluate() -> dict:
        return evaluate_pie(model=model, pie=pie, out=out, tokens=tokens, method=method, options=options, num=num,
                            seed=args.seed, device=args.device, dtype=args.dtype, label=label,
                            metric_loader=metric_loader(), **weights)
    return _evaluation(plan, args, out, f"edit PIE-Bench with {label}", command, (model, tokens, None),
                       lambda r: r["n"] == entries and r["config"].get("method") == method, evaluate)


def _evaluation(plan: Plan, args, out: Path, what: str, command: list, identity: tuple, complete, evaluate) -> dict:
    """Skip a finished evaluation made from the same files, start one afresh whose token file or tuned backbone
    changed since, else hand it to agsm (which resumes it)."""
    model, tokens, variant = identity
    inputs = _resume.fingerprint(tokens, *((variant.denoiser, variant.lora) if variant else ()))
    afresh = plan.record.changed(out, inputs)
    held = None if afresh else _resume.finished_eval(out, args, model, tokens, variant, complete)
    if plan.stage(what, command, held is not None, afresh):
        if afresh:  # agsm resumes a folder of the same settings; the files behind a path changed: clear it
            shutil.rmtree(out, ignore_errors=True)
        held = evaluate()
    plan.record.remember(out, inputs)
    return held


_METRICS: dict = {}


def metric_loader():
    """agsm's metric loader, each network loaded once per process (every evaluation of a table scores with it)."""
    from agsm.eval.scoring import default_metric_loader

    def load(name, weights, device, dtype, batch_size):
        key = (name, str(Path(weights).resolve()), str(device), str(dtype), batch_size)
        if key not in _METRICS:
            _METRICS[key] = default_metric_loader(name, weights, device, dtype, batch_size)
        return _METRICS[key]
    return load


def write(table_name: str, ours: dict, sources: dict, out: Path) -> Path:
    """Fill the paper's table with our numbers, write OUT/table.md and table.json, print the table."""
    from agsm.report.paper_tables import PAPER_TABLES, fill, write_table

    path = write_table(fill(PAPER_TABLES[table_name], ours, sources), out)
    print(path.read_text())
    print(f"wrote {path} and {path.with_name('table.json')}")
    return path


def _recipes() -> list[str]:
    from agsm.training.config import shipped_configs

    architectures, methods = ("sd15", "sdxl", "sd3"), ("softrepa", "dpo", "inpo", "spo")
    return sorted({*shipped_configs(), *architectures, *(f"{a}-{m}" for a in architectures for m in methods)})


def _train_overrides(args, recipe: str) -> list[str]:
    method = recipe.partition("-")[2] or "agsm"
    extra = _smoke.smoke_train_args(method) if args.smoke else []
    if args.train_steps:
        extra += ["--train.steps", str(args.train_steps)]
    for item in args.train_set:
        option, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r} must be OPTION=VALUE, e.g. --set train.mixed_precision=fp16")
        extra += [f"--{option.removeprefix('--')}", value]
    return extra


def _model_flags(model, tokens=None, variant=None) -> list:
    flags = ["--model", model, *(["--tokens", tokens] if tokens else [])]
    if variant is not None:
        flags += [*(["--denoiser", variant.denoiser] if variant.denoiser else []),
                  *(["--lora", variant.lora] if variant.lora else [])]
    return flags


def _sampling_flags(args) -> list:
    return [*(["--steps", args.sample_steps] if args.sample_steps else []), "--batch-size", args.batch_size,
            "--seed", args.seed, "--device", args.device, "--dtype", args.dtype]
