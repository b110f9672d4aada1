"""The parts of the GPU check and how one runs in its own process (benchmarks/gpu_check.py starts and guards it).

A part is a list of jobs (name, job, needed): a job returns a row or a list of rows (gpu_check_rows.py). `run_part`
appends to a JSON-lines file the part's plan (its job names), then each row the moment its job ends, then "done":
what a part stopped by its time guard finished is kept, and the driver reports the rest of the plan as not run. A
failing job gives a failed row and the part goes on, unless the job is `needed` (the build the other rows use).
A row with a non-finite number (a loss that overflowed in fp16, say) is a failed row.
"""
from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check_rows as rows  # noqa: E402

PARTS = ("env", "sd15", "sd3", "sdxl", "equal")
PRECISIONS = ("bf16", "fp16")
FAIL_MODES = ("raise", "hang")


def architecture_jobs(architecture: str, scale: str, device: str, peaks) -> list:
    """Build, then each row on the one pipeline: sampling and editing first, on the pipeline as built (they load
    token adapters, unloaded after), then training through one backbone adapter, as `agsm train` holds one (SD3's
    adapter hooks its joint attentions for its life, which the sampling benchmark would take for leftovers), DPO
    last (peft leaves its wrapper layers in place when the LoRA is deleted)."""
    size, built = rows.SIZES[scale][architecture], {}

    def build() -> dict:
        rows.reset_peak(device)
        started = time.perf_counter()
        built["pipe"] = pipe = rows.build_on_device(architecture, scale, device)
        rows.sync(device)
        model = getattr(pipe, "unet", None) or pipe.transformer
        return {"kind": "build", "precision": "fp32", "s_per_call": time.perf_counter() - started,
                "denoiser_parameters": sum(p.numel() for p in model.parameters()), "peak_mib": rows.peak_mib(device)}

    def train(method: str, precision: str):
        def job() -> dict:
            if "backbone" not in built:
                from agsm.pipelines import unload_soft_tokens

                unload_soft_tokens(built["pipe"])
                built["backbone"] = rows.backbone_of(built["pipe"])
            return rows.train_row(built["backbone"], method, precision, device, size, peaks)
        return job

    jobs = [("build", build, True),
            ("sample with tokens", lambda: list(rows.sample_rows(built["pipe"], architecture, scale, device, size)),
             False)]
    if architecture in rows.EDITOR:
        jobs.append((f"edit {rows.EDITOR[architecture]} + tokens",
                     lambda: rows.edit_row(built["pipe"], architecture, device, size), False))
    methods = (*rows.TOKEN_METHODS, "dpo")
    return jobs + [(f"train {m} {p}", train(m, p), False) for m in methods for p in PRECISIONS if wanted(scale, m, p)]


def wanted(scale: str, method: str, precision: str) -> bool:
    """Full size: every method in bf16 and fp16. Toy (a CPU, in tests): bf16, and fp16 (autocast + GradScaler) for
    dsm alone, the cheapest step: CPU fp16 kernels are several times slower than bf16 and prove nothing more."""
    return scale == "full" or precision == "bf16" or method == "dsm"


def part_jobs(part: str, scale: str, device: str, gemm_size: int) -> list:
    peaks = rows.Peaks(device, gemm_size)
    if part == "env":
        env = rows.environment_rows(device, scale)
        return [(name, lambda: next(env), False) for name in ("environment", "gemm bf16", "gemm fp16")]
    if part == "equal":  # fp16 (autocast + GradScaler) is CUDA only in train_step.py; toy: one pair of rows
        precisions = PRECISIONS if rows.is_cuda(device) else ("fp32", "bf16")
        pairs = [(m, p) for m in ("agsm", "softrepa") for p in precisions] if scale == "full" else [("agsm", "bf16")]
        return [(f"equal {m} {p}", lambda m=m, p=p: rows.equal_precision_pair(m, p, scale, device, gemm_size), False)
                for m, p in pairs]
    if part in rows.ARCHITECTURES:
        return architecture_jobs(part, scale, device, peaks)
    raise ValueError(f"unknown part {part!r}; the parts are {', '.join(PARTS)}")


def non_finite(row: dict) -> list[str]:
    """The names of the row's numbers that are NaN or infinite (nested dicts included)."""
    bad = []
    for key, value in row.items():
        if isinstance(value, dict):
            bad += [f"{key}.{k}" for k in non_finite(value)]
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(key)
    return bad


def run_part(part: str, scale: str, device: str, gemm_size: int, results: str, fail: str = "") -> None:
    """Run one part, appending its plan, rows and end to `results` (see the module docstring). `fail`: 'raise' fails
    the part on purpose after its plan, 'hang' stalls it after its first row (for the driver's tests)."""
    def write(record: dict) -> None:
        with open(results, "a") as f:  # one whole line per record, closed at once: a kill loses no finished row
            f.write(json.dumps({"part": part, **record}, default=str) + "\n")

    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()  # its advice on casting pipelines, once per row, would bury the log
        jobs = part_jobs(part, scale, device, gemm_size)
        write({"event": "plan", "rows": [name for name, _, _ in jobs]})
        if fail == "raise":
            raise RuntimeError(f"part {part} failed on purpose (--fail {part})")
        for index, (name, job, needed) in enumerate(jobs):
            started = time.perf_counter()
            try:
                made = job()
            except Exception as exc:  # one row's failure is a row of the table; the part goes on
                traceback.print_exc()
                write({"event": "row", "row": {"row": name, "job": name, "status": "failed", "error": _message(exc),
                                               "seconds": time.perf_counter() - started}})
                rows.release(device)
                if needed:
                    raise RuntimeError(f"{name} failed, which the rest of part {part} needs") from exc
                continue
            for row in made if isinstance(made, list) else [made]:
                row = {"row": name, "job": name, "seconds": time.perf_counter() - started, **row}
                bad = non_finite(row)
                row.update({"status": "failed", "error": f"non-finite {', '.join(bad)}"} if bad else {"status": "ok"})
                write({"event": "row", "row": row})
                print(f"[{part}] {row['row']}: {row['status']} ({row['seconds']:.1f} s)", flush=True)
            if fail == "hang" and index == 0:
                time.sleep(10 ** 6)
        write({"event": "done"})
    except Exception as exc:
        traceback.print_exc()
        write({"event": "error", "error": _message(exc)})
        sys.exit(1)


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 400 else text[:397] + "..."


def ready() -> None:
    """A no-op job: its process's start tells the driver the fork server has finished importing."""
