"""The compute side of a benchmark row: FLOPs per step counted per phase, the time per phase, the machine's peak.

- `count_phases(step_fn)`: runs `step_fn(meter)` once under torch.utils.flop_counter.FlopCounterMode (it counts
  the matmul, convolution and attention ops that actually execute, forward and backward; it does not estimate)
  and returns the FLOPs of each phase the step marked with `meter.phase(name)`.
- `time_phases(step_fn, sync)`: the same phases, timed with time.perf_counter (a coarse profile).
- `PhasedDenoiser`: wraps a TokenDenoiser so that each call lands in "target_forward" (EMA tokens or no grad:
  the targets) or "online_forward" (the pass the loss is differentiated through) without touching the objectives.
- `machine_peak(precision, device)`: the denominator of MFU. CPU: a large GEMM at the row's precision measured in
  the same process (best of a few repeats). CUDA: the card's dense bf16 peak from its datasheet (PEAK_TFLOPS),
  or a measured GEMM for a card not in the table.

FlopCounterMode's formulas (torch/utils/flop_counter.py) count 2 FLOPs per multiply-add of mm/bmm/addmm,
convolutions (forward, and backward per output_mask, so frozen weights add no weight-gradient FLOPs) and the CUDA
SDPA kernels. Elementwise ops, norms and the optimizer count zero: MFU is about the matmul work.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets; fp16 dense is the same on these
# cards. Matched in order against torch.cuda.get_device_name(); the first key contained in the name wins.
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _cpu_sdpa_mapping() -> dict:
    """FLOP formulas for the CPU's fused attention, which torch's counter registers only for the CUDA kernels.

    Without them every attention of a UNet on the CPU counts zero (checked on torch 2.13). The CPU flash kernel
    does the same two matmuls forward and five backward (with the score recomputation) as the CUDA ones, so the
    counts reuse torch's own sdpa formulas. Ops missing from an older torch are skipped.
    """
    aten = torch.ops.aten
    mapping = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None:
        mapping[forward] = lambda query, key, value, *args, out_shape=None, **kwargs: sdpa_flop_count(
            query, key, value)
    if backward is not None:
        mapping[backward] = lambda grad_out, query, key, value, *args, out_shape=None, **kwargs: \
            sdpa_backward_flop_count(grad_out, query, key, value)
    return mapping


class PhaseMeter:
    """Splits one step into named phases, exclusively: a phase opened inside another takes its share away.

    Work outside every phase (noise draws, loss math, tiling) lands in "other". With a FlopCounterMode the
    meter reads its running total at each phase switch; with `clock` it reads time.perf_counter, after `sync`
    (torch.cuda.synchronize on a GPU, so queued kernels are charged to the phase that launched them).
    """

    def __init__(self, counter: FlopCounterMode | None = None, clock: bool = False, sync=None):
        self.counter, self.clock, self.sync = counter, clock, sync
        self.flops: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack = ["other"]
        self._mark_flops, self._mark_time = self._read()

    def _read(self) -> tuple[int, float]:
        if self.sync is not None:
            self.sync()
        return (self.counter.get_total_flops() if self.counter is not None else 0,
                time.perf_counter() if self.clock else 0.0)

    def _switch(self) -> None:
        flops, now = self._read()
        self.flops[self._stack[-1]] += flops - self._mark_flops
        self.seconds[self._stack[-1]] += now - self._mark_time
        self._mark_flops, self._mark_time = flops, now

    @contextmanager
    def phase(self, name: str):
        self._switch()
        self._stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def finish(self) -> None:
        """Charge the tail of the step (after the last phase) to "other"."""
        self._switch()


class NullMeter:
    """The meter of a timed step: phases cost nothing and record nothing."""

    def phase(self, name: str):
        return nullcontext()


class PhasedDenoiser:
    """A TokenDenoiser whose calls are charged to "target_forward" (EMA tokens, or under no_grad: the targets no
    gradient flows through) or "online_forward" (the pass the loss is differentiated through). Everything else
    (add_noise, target, backbone ...) passes through to the wrapped denoiser."""

    def __init__(self, denoiser, meter: PhaseMeter):
        self._denoiser, self._meter = denoiser, meter

    def __call__(self, *args, ema: bool = False, **kwargs):
        name = "target_forward" if ema or not torch.is_grad_enabled() else "online_forward"
        with self._meter.phase(name):
            return self._denoiser(*args, ema=ema, **kwargs)

    def __getattr__(self, name):
        return getattr(self._denoiser, name)


def count_phases(step_fn) -> dict[str, int]:
    """FLOPs of one call of step_fn(meter), per phase (only phases that occurred; "other" always present)."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping()) as counter:
        meter = PhaseMeter(counter=counter)
        step_fn(meter)
        meter.finish()
    return dict(meter.flops)


def time_phases(step_fn, sync=None) -> dict[str, float]:
    """Seconds of one call of step_fn(meter), per phase; `sync` runs before every clock reading."""
    meter = PhaseMeter(clock=True, sync=sync)
    step_fn(meter)
    meter.finish()
    return dict(meter.seconds)


def measure_gemm_tflops(precision: str, device: str, n: int = 2048, repeats: int = 5, min_seconds: float = 1.0,
                        max_repeats: int = 50) -> float:
    """Best TFLOP/s of an n x n x n matmul (2 n^3 FLOPs) at `precision`, after one warm-up.

    At least `repeats` runs and, up to `max_repeats`, until `min_seconds` have passed: a fast bf16 GEMM (AMX) takes
    tens of ms, and on a shared machine five of those swung by 2x between processes; more tries find the peak.
    """
    dtype = DTYPES[precision]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best, spent, runs = float("inf"), 0.0, 0
    while runs <= repeats or (spent < min_seconds and runs <= max_repeats):
        sync()
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        took = time.perf_counter() - start
        if runs > 0:  # the first run pays for kernel selection and page faults
            best, spent = min(best, took), spent + took
        runs += 1
    return 2 * n ** 3 / best / 1e12


def table_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a known card (PEAK_TFLOPS), or None."""
    return next((peak for key, peak in PEAK_TFLOPS if key in device_name), None)


def machine_peak(precision: str, device: str, gemm_size: int = 2048) -> dict:
    """{"peak_tflops", "peak_source", "gemm_tflops"}: the MFU denominator and where it came from.

    CUDA: the datasheet's dense bf16 peak for every precision (MFU against what the card can do at best), with
    the measured GEMM at the row's precision kept beside it; a card not in the table uses a measured bf16 GEMM.
    CPU: no datasheet to trust (clocks, AVX-512 BF16 or not, threads), so the GEMM at the row's precision,
    measured in this process with its thread count, is the peak.
    """
    if device.startswith("cuda"):
        name, n = torch.cuda.get_device_name(torch.device(device)), max(gemm_size, 8192)  # small GEMMs underfill a GPU
        gemm = measure_gemm_tflops(precision, device, n=n)
        table = table_peak_tflops(name)
        if table is not None:
            return {"peak_tflops": table, "peak_source": f"datasheet dense bf16, {name}", "gemm_tflops": gemm}
        peak = measure_gemm_tflops("bf16", device, n=n)
        return {"peak_tflops": peak, "peak_source": f"measured {n}^3 bf16 GEMM, {name} (not in the table)",
                "gemm_tflops": gemm}
    gemm = measure_gemm_tflops(precision, device, n=gemm_size)
    return {"peak_tflops": gemm, "peak_source": f"measured {gemm_size}^3 {precision} GEMM, "
                                                f"{torch.get_num_threads()} threads", "gemm_tflops": gemm}
