"""The one prepared check of the GPU path (issue 26, item 8); scripts/gpu_check.sh sets up and runs it.

    python benchmarks/gpu_check.py                     # full-size SD1.5, SDXL, SD3 on the GPU, random weights
    python benchmarks/gpu_check.py --scale toy         # the same parts at toy size on the CPU (tests/test_gpu_check.py)
    python benchmarks/gpu_check.py --report runs/gpu/gpu_check.json   # a finished run's table, for RESULTS.md

Parts (gpu_check_parts.py), in this order, each in its own process under its own time guard, so a failing or slow
part loses nothing of the others: env (card, libraries, MFU peak, GEMMs); sd15, sd3, sdxl (build on the device;
agsm, softrepa, dsm token training in bf16 and fp16; sampling with tokens; pnp on SD1.5, flowedit on SD3, with
tokens; Diffusion-DPO as a rank-4 LoRA on the denoiser in bf16 and fp16: full tuning, heavy on SDXL, is left out);
equal (benchmarks/train_step.py's equal-precision rows, SD1.5 at 512 px). Processes fork from one server that
imported torch, diffusers and agsm once; each child starts CUDA itself.

Budget at full size on one H100 (ESTIMATES from the earlier H100 rows in RESULTS.md and the FLOP counts, not
measured): env 5 s, sd15 45 s, sd3 60 s, sdxl 60 s, equal 70 s, plus about 30 s of imports and set-up: 5 minutes.
The guards (GUARD_S) cap each part and --budget (default 440 s; the shell script passes what is left of its 8
minutes less 40 s) caps their sum. MFU = counted FLOPs / measured time / the card's dense bf16 peak (H100 SXM and H200:
989 TFLOP/s; flops.PEAK_TFLOPS, matched on the card's name; the peak used is in every row).

Writes to --out (default $OUT, else runs/gpu): gpu_check.json (environment, every part's status, guard, seconds
and rows; rewritten after each part), gpu_check.md (the table) and rows.jsonl (rows as they came).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check_parts  # noqa: E402
from gpu_check_parts import FAIL_MODES, PARTS  # noqa: E402

GUARD_S = {"full": {"env": 30, "sd15": 100, "sd3": 115, "sdxl": 115, "equal": 120},
           "toy": {part: 300 for part in PARTS}}
BUDGET_S = {"full": 440, "toy": 1500}
PRELOAD = ["torch", "diffusers", "transformers", "peft", "accelerate", "agsm.training.trainables", "agsm.pipelines",
           "agsm.editing", "gpu_check_rows", "gpu_check_parts", "train_step", "sampling_overhead"]
FAIL_ENV = "AGSM_GPU_CHECK_FAIL"  # e.g. "sd3" or "sd3:hang", as --fail


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["full", "toy"], default="full")
    parser.add_argument("--toy", action="store_const", const="toy", dest="scale", help="same as --scale toy")
    parser.add_argument("--device", default="auto", help="auto (cuda when there is one), cuda or cpu")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu", help="folder for the JSON and table")
    parser.add_argument("--budget", type=float, help="seconds for all parts together (default 440 full, 1500 toy)")
    parser.add_argument("--guard", action="append", default=[], metavar="PART=SECONDS",
                        help="another time guard for one part (default GUARD_S)")
    parser.add_argument("--fail", action="append", default=[], metavar="PART[:hang]",
                        help=f"make a part fail on purpose (or hang after its first row); also ${FAIL_ENV}")
    parser.add_argument("--gemm-size", type=int, help="CPU: side of the GEMM that is the MFU peak (toy 256)")
    parser.add_argument("--report", metavar="JSON", help="print a finished run's table as markdown and stop")
    args = parser.parse_args(argv)
    args.guards = dict(GUARD_S[args.scale])
    for text in args.guard:
        part, _, seconds = text.partition("=")
        if part not in PARTS or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--guard {text!r}: give PART=SECONDS with PART one of {', '.join(PARTS)}")
        args.guards[part] = float(seconds)
    args.fails = {}
    for text in args.fail + [t for t in os.environ.get(FAIL_ENV, "").split(",") if t]:
        part, _, mode = text.partition(":")
        if part not in PARTS or (mode or "raise") not in FAIL_MODES:
            parser.error(f"--fail {text!r}: give PART or PART:hang with PART one of {', '.join(PARTS)}")
        args.fails[part] = mode or "raise"
    return args


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch {torch.__version__} sees no CUDA GPU; use --device cpu "
                         "(with --scale toy) or a torch built with CUDA")
    return device


def collect(part: str, path: Path) -> dict:
    """What the part's process wrote: its plan, rows, end or error."""
    found = {"plan": [], "rows": [], "done": False, "error": None}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["part"] != part:
                continue
            if record["event"] == "plan":
                found["plan"] = record["rows"]
            elif record["event"] == "row":
                found["rows"].append({"part": part, **record["row"]})
            elif record["event"] == "done":
                found["done"] = True
            elif record["event"] == "error":
                found["error"] = record["error"]
    return found


def part_record(part: str, found: dict, exitcode, stopped_by: str | None, seconds: float, guard: float) -> dict:
    """The part's status and rows; planned rows that never reported are 'not run'. stopped_by: what killed the
    part (its guard, the script's time limit), None when it ended by itself."""
    reported = {r.get("job", r["row"]) for r in found["rows"]}
    for name in found["plan"]:
        if name not in reported:
            why = f"not run: part stopped by {stopped_by}" if stopped_by else "not run: part ended"
            found["rows"].append({"part": part, "row": name, "status": why})
    if stopped_by:
        status = "timed out"
    elif exitcode == 0 and found["done"] and all(r["status"] == "ok" for r in found["rows"]):
        status = "ok"
    else:
        status = "failed"
    error = found["error"] or (f"process ended with exit code {exitcode}" if exitcode and not stopped_by else None)
    return {"part": part, "status": status, "seconds": seconds, "guard_s": guard, "error": error,
            "rows": found["rows"]}


class Stopped(Exception):
    """SIGTERM arrived (the shell script's time limit): the running part is ended and the run wrapped up."""


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # a reader (or a kill) never sees half a file


def run(args) -> dict:
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows_path.unlink(missing_ok=True)
    gemm = args.gemm_size or (8192 if device.startswith("cuda") else 256 if args.scale == "toy" else 2048)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    started = time.monotonic()
    warm = context.Process(target=gpu_check_parts.ready)  # returns once the server has imported PRELOAD
    warm.start()
    warm.join()
    summary = {"command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]]), "scale": args.scale,
               "device": device, "budget_s": args.budget or BUDGET_S[args.scale],
               "import_s": time.monotonic() - started, "environment": {}, "parts": []}
    deadline = time.monotonic() + summary["budget_s"]

    def stop(signum, frame):
        raise Stopped(f"signal {signum}")
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        signal.signal(signal.SIGTERM, stop)
    try:
        for part in args.parts:
            guard = min(args.guards[part], deadline - time.monotonic())
            if guard < 1:
                summary["parts"].append({"part": part, "status": "skipped", "seconds": 0.0, "guard_s": 0.0,
                                         "error": "the total budget was spent", "rows": []})
                continue
            print(f"=== {part} (guard {guard:.0f} s)", flush=True)
            begin, stopped_by = time.monotonic(), None
            process = context.Process(target=gpu_check_parts.run_part, name=f"gpu-check-{part}",
                                      args=(part, args.scale, device, gemm, str(rows_path), args.fails.get(part, "")))
            process.start()
            try:
                process.join(guard)
                if process.is_alive():
                    stopped_by = f"its {guard:.0f} s guard"
            except Stopped:
                stopped_by = "the script's time limit (SIGTERM)"
                raise
            finally:
                if process.is_alive():
                    process.kill()
                    process.join()
                record = part_record(part, collect(part, rows_path), process.exitcode, stopped_by,
                                     time.monotonic() - begin, guard)
                summary["parts"].append(record)
                if part == "env":
                    summary["environment"] = next((r.get("info", {}) for r in record["rows"]
                                                   if r["row"] == "environment"), {})
                summary["wall_s"] = time.monotonic() - started
                write_json(out / "gpu_check.json", summary)
                print(f"=== {part}: {record['status']} in {record['seconds']:.0f} s"
                      + (f" ({record['error']})" if record["error"] else ""), flush=True)
    except Stopped as why:
        summary["stopped"] = f"stopped by {why}"
        done = {p["part"] for p in summary["parts"]}
        summary["parts"] += [{"part": part, "status": "skipped", "seconds": 0.0, "guard_s": 0.0,
                              "error": summary["stopped"], "rows": []} for part in args.parts if part not in done]
        print(summary["stopped"], flush=True)
    summary["wall_s"] = time.monotonic() - started
    write_json(out / "gpu_check.json", summary)
    table = markdown(summary)
    (out / "gpu_check.md").write_text(table + "\n")
    print("\n" + table, flush=True)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}", flush=True)
    return summary


def _num(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else ""


def _note(row: dict) -> str:
    if row["status"] != "ok":
        return row.get("error", "")
    if "vs_public" in row:
        return f"{row['vs_public']:.2f}x public pairs/s, {row['memory_vs_public']:.2f}x memory"
    if "overhead_pct" in row:
        return f"{row['rate_without']:.3f} images/s without tokens ({row['overhead_pct']:+.1f}%)"
    if "info" in row:
        info = row["info"]
        return f"{info['device_name']}; torch {info['torch']} (CUDA {info['cuda']}), diffusers {info['diffusers']}"
    if "denoiser_parameters" in row:
        return f"denoiser {row['denoiser_parameters'] / 1e6:,.4g} M parameters"
    if "trains" in row:
        return f"{row['work_per_step']} pairs/step, trains {row['trains']}"
    return ""


def markdown(summary: dict) -> str:
    """One table: every part's rows, with the environment and the MFU peak above it."""
    env = summary.get("environment") or {}
    lines = [f"Device: {env.get('device_name', summary.get('device'))}; torch {env.get('torch', '?')}, diffusers "
             f"{env.get('diffusers', '?')}; scale {summary['scale']}; MFU peak: "
             f"{env.get('peak_source') or 'not known'} ({_num(env.get('peak_tflops'), '.0f') or '-'} TFLOP/s); "
             f"wall {summary.get('wall_s', 0):.0f} s of a {summary['budget_s']:.0f} s budget"
             + (f"; {summary['stopped']}" if summary.get("stopped") else ""), "",
             "| part | row | status | precision | s/step or s/call | rate | GFLOP/step | TFLOP/s | MFU | peak MiB "
             "| note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for part in summary["parts"]:
        if not part["rows"]:
            lines.append(f"| {part['part']} | (part) | {part['status']} | | | | | | | | {part['error'] or ''} |")
        for r in part["rows"]:
            seconds = r.get("s_per_step", r.get("s_per_call"))
            rate = f"{_num(r.get('rate'), '.3g')} {r.get('unit', '')}".strip()
            mfu = f"{100 * r['mfu']:.1f}%" if isinstance(r.get("mfu"), float) else ""
            gflop = r.get("gflop_per_step", r.get("gflop_per_call"))
            lines.append(f"| {part['part']} | {r['row']} | {r['status']} | {r.get('precision', '')} | "
                         f"{_num(seconds, '.3f')} | {rate} | {_num(gflop, ',.0f')} | "
                         f"{_num(r.get('tflops'), '.3g')} | {mfu} | {_num(r.get('peak_mib'), ',.0f')} | "
                         f"{_note(r).replace('|', '/')} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.report:
        summary = json.loads(Path(args.report).read_text())
        print(markdown(summary))
        return summary
    return run(args)


if __name__ == "__main__":
    result = main()
    # a part that failed, timed out or was skipped makes the command fail, after everything is written
    sys.exit(0 if all(part["status"] == "ok" for part in result.get("parts", [])) else 1)
