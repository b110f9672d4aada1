"""Pairs per second, FLOPs, MFU and peak memory of one AGSM / SoftREPA training step, two ways, at equal precision.

    python benchmarks/train_step.py --models tiny --steps 5 --precision fp32 bf16       # CPU, both precisions
    python benchmarks/train_step.py --models sd15 --steps 2 --precision fp32 bf16 --defaults
    python benchmarks/train_step.py --models sd15 --device cuda --latent 64 --precision bf16 fp16 --defaults
    python benchmarks/train_step.py --models tiny --steps 5 --precision bf16 --profile  # where the time goes

Modes:
- public: the public code's structure as we understand it: VAE and text encoders run on every step, and
  SoftREPA's diagonal term recomputes the positive pairs in a separate forward. Its weights stay fp32; a
  reduced precision is autocast over them, as the public code trains (fp16 autocast + GradScaler on a GPU).
- ours: latents and text conditioning come from the encode-once cache, the diagonal term reuses the error
  matrix; at a reduced precision the frozen denoiser is stored in it and run under autocast, as `agsm train`
  does with `train.mixed_precision: bf16|fp16`; on a CPU under bf16 its gradient-carrying attention runs in fp32,
  as `agsm train` does by default (train.attention_precision auto; step_options.py measures it on its own).

Precision (`--precision`, one or more; every ratio compares the two modes at the same one):
- fp32: no autocast on either side.
- bf16: bf16 autocast on both sides (public over fp32 weights, ours over bf16 weights).
- fp16 (CUDA only): fp16 autocast + torch.amp.GradScaler on both sides (ours over fp16 weights).
`--defaults` adds a separate, labelled comparison of what each user gets out of the box: the public code in fp32
on a CPU (fp16 + GradScaler on a GPU) against ours in bf16 (the shipped configs' train.mixed_precision). It mixes
precision with structure and is never an equal-precision ratio. Measurements it shares with `--precision` are
made once.

Per row: s/step, pairs/s, GFLOP/step (counted with FlopCounterMode on a separate, untimed step and split into
encoders / target (EMA) forward / online forward / backward, see flops.py), achieved TFLOP/s, the machine's peak
(CPU: a GEMM at the row's precision measured in the same process; CUDA: the card's dense bf16 peak), MFU =
achieved / peak, peak memory, and ours / public at the same precision. `--profile` adds, per row, the time of
one step split into the same phases and, for "ours", torch.profiler's top ops by self time.
Each (model, method, mode, precision) runs in its own process so its peak memory (max RSS on the CPU, peak
allocated on CUDA) is its own; the FLOP count, GEMM and profile run after the peak is read. Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import DTYPES, NullMeter, PhasedDenoiser, count_phases, machine_peak, time_phases  # noqa: E402

CAPTIONS = ["a red circle", "two blue squares", "a green triangle above a yellow circle", "three purple squares",
            "an orange circle", "a blue triangle", "four red squares", "a yellow square and a green circle"]
PHASES = ("encoders", "target_forward", "online_forward", "backward", "optimizer", "other")


def default_precision(mode: str, device: str) -> str:
    """What a user of each code trains in unless told otherwise: the public code fp32 on a CPU and fp16 autocast
    + GradScaler on a GPU (docs/method.md, public code details); ours bf16 (train.mixed_precision in the shipped
    configs)."""
    if mode == "ours":
        return "bf16"
    return "fp16" if device.startswith("cuda") else "fp32"


def build(model: str, device: str):
    from agsm.backbones.architectures import sd3_full_pipeline, sd15_full_pipeline, tiny_sd15_pipeline
    from agsm.backbones.mmdit import MMDiTBackbone
    from agsm.backbones.unet import UNetBackbone

    if model == "sd3":
        return MMDiTBackbone(sd3_full_pipeline().to(device))
    pipe = tiny_sd15_pipeline() if model == "tiny" else sd15_full_pipeline()
    return UNetBackbone(pipe.to(device))


class Bench:
    """One configured training step: `step(i, meter)` runs step i; a PhaseMeter (flops.py) splits it into phases."""

    def __init__(self, model: str, method: str, mode: str, images: int, latent: int, precision: str, device: str):
        from agsm.objectives import get_method
        from agsm.training.denoisers import TokenDenoiser
        from agsm.objectives.pairs import in_batch_captions
        from agsm.tokens import SoftTokens, install_tokens, placement_for

        if precision == "fp16" and not device.startswith("cuda"):
            raise ValueError("--precision fp16 (autocast + GradScaler) is for CUDA; on the CPU use fp32 or bf16")
        self.method, self.mode, self.images, self.device = method, mode, images, device
        torch.manual_seed(0)
        self.backbone = backbone = build(model, device)
        vae_factor = backbone.pipe.vae_scale_factor
        self.pixels = torch.rand(images, 3, latent * vae_factor, latent * vae_factor, device=device) * 2 - 1
        self.captions = CAPTIONS[:images]
        self.cached_x0 = backbone.encode_images(self.pixels)  # fp32, as the cache is built before training
        self.cached_text = backbone.encode_text(self.captions)
        num_sets = 2 if method == "agsm" else 1
        count = 4 * (5 if backbone.family == "mmdit" else 1)  # MM-DiT: 4 tokens in each of the first 5 blocks
        self.tokens = SoftTokens(count, backbone.token_width, num_sets=num_sets).to(device)
        self.ema = SoftTokens(count, backbone.token_width, num_sets=num_sets).to(device).requires_grad_(False)
        injector = install_tokens(backbone.denoiser, backbone.family, self.tokens, placement_for(backbone.family))
        self.denoiser = TokenDenoiser(backbone, injector, self.tokens, self.ema)
        self.optimizer = torch.optim.AdamW(self.tokens.parameters(), lr=1e-3)
        # Public code: SoftREPA's diagonal term d = 10 on UNets, 0 on SD3; AGSM on SD3 uses gamma_neg 0.1.
        diagonal = 10.0 if method == "softrepa" and backbone.family == "unet" else 0.0
        own = {"diagonal_weight": diagonal} if method == "softrepa" else \
            {"gamma_neg": 0.1 if backbone.family == "mmdit" else 1.0}
        self.config = get_method(method).options(**own)
        self.index, self.pos = in_batch_captions(images, images)
        self.autocast_dtype = None if precision == "fp32" else DTYPES[precision]
        if mode == "ours" and self.autocast_dtype is not None:
            backbone.denoiser.to(self.autocast_dtype)  # as `agsm train`: frozen weights stored at the precision
        # fp16 has too little range for small gradients: both codes scale the loss (accelerate does it for ours).
        self.scaler = torch.amp.GradScaler(device.split(":")[0]) if precision == "fp16" else None
        # train.attention_precision (agsm/training/speed.py): ours as `agsm train` runs it by default; public native.
        self.attention = "auto" if mode == "ours" else "native"

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast_dtype)

    def step(self, step: int, meter=None) -> None:
        from agsm.training.speed import Fp32GradAttention, upcasts_attention

        upcast = upcasts_attention(self.attention, self.device, self.autocast_dtype or torch.float32)
        with Fp32GradAttention() if upcast else nullcontext():
            self._step(step, meter)

    def _step(self, step: int, meter=None) -> None:
        from agsm.backbones.base import TextCond
        from agsm.training.denoisers import update_ema
        from agsm.objectives import PairBatch, get_method
        from agsm.objectives.pairs import per_pair_mse

        meter = meter or NullMeter()
        denoiser = self.denoiser if isinstance(meter, NullMeter) else PhasedDenoiser(self.denoiser, meter)
        backbone, config, device, images = self.backbone, self.config, self.device, self.images
        g = torch.Generator().manual_seed(step)
        with self.autocast():
            if self.mode == "public":
                with meter.phase("encoders"):
                    x0, text = backbone.encode_images(self.pixels), backbone.encode_text(self.captions)
            else:
                x0, text = self.cached_x0, self.cached_text
            batch = PairBatch(x0, TextCond(**text.tensors()), self.index, self.pos)
            if self.mode == "public" and self.method == "softrepa" and config.diagonal_weight > 0:
                loss = get_method(self.method).step(denoiser, batch, replace(config, diagonal_weight=0.0), g)[0]
                g2 = torch.Generator().manual_seed(step)  # same t and eps: recompute the positive pairs
                t = backbone.sample_timesteps(images, g2).to(device)
                eps = torch.randn(x0.shape, generator=g2).to(device)
                pred = denoiser(backbone.add_noise(x0, eps, t), t, batch.captions,
                                torch.zeros_like(t, dtype=torch.long))
                loss = loss + config.diagonal_weight * per_pair_mse(pred, backbone.target(x0, eps, t)).mean()
            else:
                loss = get_method(self.method).step(denoiser, batch, config, g)[0]
        with meter.phase("backward"):
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        with meter.phase("optimizer"):
            if self.scaler is None:
                self.optimizer.step()
            else:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            self.optimizer.zero_grad()
            update_ema(self.ema, self.tokens, 0.9999)


def run_one(model: str, method: str, mode: str, precision: str, steps: int, images: int, latent: int, device: str,
            gemm_size: int = 2048, profile: bool = False, bench_class=None) -> dict:
    """One row: warm-up, timed steps, peak memory; then (untimed) the FLOP count, the peak GEMM, the profile.
    `bench_class`: a Bench subclass (benchmarks/step_options.py measures speed options with one)."""
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    bench = (bench_class or Bench)(model, method, mode, images, latent, precision, device)
    for warm in range(3):  # warm-up: allocator, kernels, caches (one step was not enough at tiny size)
        bench.step(-1 - warm)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(steps):
        bench.step(step)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak_mib = (torch.cuda.max_memory_allocated() if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20

    flops = count_phases(lambda meter: bench.step(steps, meter))
    total = sum(flops.values())
    peak = machine_peak(precision, device, gemm_size)
    achieved = total / seconds / 1e12
    row = {"model": model, "method": method, "mode": mode, "precision": precision, "images": images,
           "pairs_per_step": images * images, "latent": latent, "device": device, "threads": torch.get_num_threads(),
           "seconds_per_step": seconds, "pairs_per_s": images * images / seconds, "peak_mib": peak_mib,
           "flops": flops, "gflop_per_step": total / 1e9, "achieved_tflops": achieved, **peak,
           "mfu": achieved / peak["peak_tflops"]}
    if profile:
        row["phase_seconds"] = time_phases(lambda meter: bench.step(steps + 1, meter), sync)
        if mode == "ours":
            row["profile_table"] = _top_ops(bench, steps + 2, cuda)
    return row


def _top_ops(bench: Bench, step: int, cuda: bool, rows: int = 15) -> str:
    """torch.profiler's top ops of one step by self time (CPU; CUDA time on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        bench.step(step)
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "sd15"], choices=["tiny", "sd15", "sd3"])
    parser.add_argument("--methods", nargs="+", default=["agsm", "softrepa"], choices=["agsm", "softrepa"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=4, help="images per step; pairs = images^2")
    parser.add_argument("--latent", type=int, default=8, help="latent side (SD1.5 uses 64 at 512 px; tiny is 16)")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "fp16"],
                        help="equal-precision comparisons, one per value (default fp32 unless --defaults alone); "
                             "fp16 = autocast + GradScaler, CUDA only")
    parser.add_argument("--defaults", action="store_true",
                        help="also compare what each user gets by default (public fp32 on a CPU / fp16 + GradScaler "
                             "on a GPU, ours bf16): labelled, NOT an equal-precision ratio")
    parser.add_argument("--profile", action="store_true",
                        help="time one step per row by phase; torch.profiler's top ops for 'ours'")
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the CPU peak-GEMM matmul")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="benchmarks/train_step.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD:MODE:PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    precisions = args.precision or ([] if args.defaults else ["fp32"])
    if "fp16" in precisions and not args.device.startswith("cuda"):
        parser.error("--precision fp16 (autocast + GradScaler) is CUDA only; on the CPU use fp32 and bf16")

    if args.one:  # child process: one measurement, printed as JSON
        method, mode, precision = args.one[1].split(":")
        latent = 16 if args.one[0] == "tiny" else args.latent
        print(json.dumps(run_one(args.one[0], method, mode, precision, args.steps, args.images, latent, args.device,
                                 args.gemm_size, args.profile)))
        return

    wanted = []  # (model, method, mode, precision), each measured once
    for model in args.models:
        for method in args.methods:
            pairs = [(p, p) for p in precisions]
            if args.defaults:
                pairs.append((default_precision("public", args.device), default_precision("ours", args.device)))
            for pub, ours in pairs:
                for key in ((model, method, "public", pub), (model, method, "ours", ours)):
                    if key not in wanted:
                        wanted.append(key)
    rows = {}
    for model, method, mode, precision in wanted:
        cmd = [sys.executable, __file__, "--one", model, f"{method}:{mode}:{precision}", "--steps", str(args.steps),
               "--images", str(args.images), "--latent", str(args.latent), "--device", args.device,
               "--gemm-size", str(args.gemm_size)] + (["--profile"] if args.profile else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{model} {method} {mode} {precision} failed:\n{out.stderr[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows[model, method, mode, precision] = row
        print(f"measured {model} {method} {mode} {precision}: {row['seconds_per_step']:.3f} s/step", flush=True)

    equal, defaults = [], []
    for model in args.models:
        for method in args.methods:
            for p in precisions:
                equal.append(_compare(rows[model, method, "public", p], rows[model, method, "ours", p]))
            if args.defaults:
                pub_p, ours_p = default_precision("public", args.device), default_precision("ours", args.device)
                defaults.append(_compare(rows[model, method, "public", pub_p], rows[model, method, "ours", ours_p]))
    if equal:
        print("\nEqual precision: both modes at the precision in the 'prec' column; 'vs public' = ours / public "
              "at that same precision")
        _print_table(equal)
    if defaults:
        print("\nDEFAULTS, NOT equal precision: what each user gets out of the box (public fp32 on a CPU / fp16 + "
              "GradScaler on a GPU, ours bf16); the ratio mixes precision with structure")
        _print_table(defaults)
    if args.profile:
        _print_profiles(rows.values())
    Path(args.json).write_text(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
        "rows": list(rows.values()), "equal_precision": [_summary(c) for c in equal],
        "defaults_not_equal_precision": [_summary(c) for c in defaults]}, indent=2))
    print(f"wrote {args.json}")


def _compare(public: dict, ours: dict) -> dict:
    return {"model": public["model"], "method": public["method"], "public": public, "ours": ours,
            "public_precision": public["precision"], "ours_precision": ours["precision"],
            "pairs_ratio": ours["pairs_per_s"] / public["pairs_per_s"],
            "memory_ratio": ours["peak_mib"] / public["peak_mib"]}


def _summary(comparison: dict) -> dict:
    return {k: comparison[k] for k in ("model", "method", "public_precision", "ours_precision", "pairs_ratio",
                                       "memory_ratio")}


HEADER = (f"{'model':5s} {'method':9s} {'mode':6s} {'prec':4s} {'s/step':>8s} {'pairs/s':>8s} {'GFLOP/step':>10s} "
          f"{'TFLOP/s':>8s} {'peak TF/s':>9s} {'MFU':>6s} {'peak mem':>10s} {'vs public':>10s} {'mem vs pub':>10s}")


def _print_table(comparisons) -> None:
    """Each comparison as its public row, then its ours row carrying ours / public in pairs/s and peak memory."""
    print(HEADER)
    for comp in comparisons:
        for row in (comp["public"], comp["ours"]):
            _print_row(row, f"{comp['pairs_ratio']:9.2f}x {comp['memory_ratio']:9.2f}x" if row is comp["ours"]
                       else "")


def _print_row(row: dict, ratio: str) -> None:
    print(f"{row['model']:5s} {row['method']:9s} {row['mode']:6s} {row['precision']:4s} "
          f"{row['seconds_per_step']:8.3f} {row['pairs_per_s']:8.2f} {row['gflop_per_step']:10.2f} "
          f"{row['achieved_tflops']:8.4f} {row['peak_tflops']:9.3f} {row['mfu']:6.1%} "
          f"{row['peak_mib']:6.0f} MiB {ratio}")


def _print_profiles(rows) -> None:
    print("\nWhere the time of one step goes (s; perf_counter at phase switches) and its counted GFLOP")
    print(f"{'model':5s} {'method':9s} {'mode':6s} {'prec':4s} " + " ".join(f"{p:>15s}" for p in PHASES))
    for r in rows:
        cells = []
        for p in PHASES:
            s, f = r["phase_seconds"].get(p), r["flops"].get(p, 0) / 1e9
            cells.append(f"{s:6.3f}s {f:6.2f}G" if s is not None else f"{'-':>15s}")
        print(f"{r['model']:5s} {r['method']:9s} {r['mode']:6s} {r['precision']:4s} " + " ".join(cells))
    for r in rows:
        if "profile_table" in r:
            print(f"\nTop ops by self time: {r['model']} {r['method']} {r['mode']} {r['precision']}")
            print(r["profile_table"])


if __name__ == "__main__":
    main()
