"""Each speed option of the training step on its own against the baseline (issue 17, item 3).

    # the RESULTS.md runs (2 threads): tiny without compile, SD1.5 (64 px), then compile on tiny
    python benchmarks/step_options.py --models tiny --steps 10 --options baseline channels_last \
        gradient_checkpointing attention_fp32 sdpa_math fused_target --json benchmarks/step_options_cpu_tiny.json
    python benchmarks/step_options.py --models sd15 --sd15-steps 2 --options baseline channels_last \
        gradient_checkpointing attention_fp32 --json benchmarks/step_options_cpu_sd15.json
    python benchmarks/step_options.py --models tiny --steps 10 --options baseline compile --cold-compile \
        --json benchmarks/step_options_cpu_compile.json
    python benchmarks/step_options.py --models tiny --steps 2 --options baseline channels_last   # a quick look

Rows: the "ours" step of benchmarks/train_step.py (encode-once cache, the frozen denoiser stored at the precision and
run under autocast; AGSM, 4 images x 4 captions = 16 pairs) with all options off and native attention ("baseline"),
then with one option at a time:
- channels_last, compile, gradient_checkpointing: train.channels_last, train.compile, train.gradient_checkpointing,
  applied by agsm.training.speed.prepare_denoiser as `agsm train` applies them.
- attention_fp32: train.attention_precision fp32 (what `auto` picks on a CPU under bf16): the attention calls that
  carry a gradient run in fp32.
- sdpa_math: torch's math attention backend for the whole step (torch.nn.attention.sdpa_kernel(SDPBackend.MATH)),
  the other cure tried for the slow bf16 CPU attention backward; not an agsm option.
- fused_target: an experiment, not an agsm option: the EMA (target) pass and the online pass as one batched forward
  with grad, the first half with the EMA tokens. It saves one forward's launches and pays the backward of the EMA
  half (its outputs are detached, but a batched op's backward covers the whole batch).
Per row: s/step, pairs/s, counted GFLOP/step, the machine's peak (a GEMM measured in the row's process) and MFU
(flops.py, as train_step.py), and peak memory. Memory: each row
is its own process; after the model is built the process's peak RSS is reset (/proc/self/clear_refs), so on a CPU
"peak mem" is the weights plus what the steps need, without the build's transient peak; CUDA: peak allocated.
"first step" is the first warm-up step (with `compile`: the compilation, from the inductor cache if it is warm;
`--cold-compile` gives each process an empty cache). compile is measured on the models in `--compile-on` only.
Writes JSON and prints a table; "vs base" = pairs/s over the baseline's, "mem vs base" likewise for peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import Bench, run_one  # noqa: E402

OPTIONS = ("baseline", "channels_last", "compile", "gradient_checkpointing", "attention_fp32", "sdpa_math",
           "fused_target")


class OptionBench(Bench):
    """train_step.Bench ("ours") with one option applied; `option` is set on the class by the child process."""

    option = "baseline"
    first_step_s: float | None = None
    build_peak_mib: float | None = None

    def __init__(self, *args):
        from agsm.training.config import TrainConfig
        from agsm.training.speed import prepare_denoiser

        super().__init__(*args)
        self.attention = "fp32" if self.option == "attention_fp32" else "native"
        prepare_denoiser(self.backbone.denoiser, TrainConfig(
            channels_last=self.option == "channels_last", compile=self.option == "compile",
            gradient_checkpointing=self.option == "gradient_checkpointing", attention_precision=self.attention),
            self.device, self.autocast_dtype or torch.float32)  # attention: Bench.step applies self.attention
        if self.option == "fused_target" and (self.method != "agsm" or self.backbone.family != "unet"):
            raise ValueError("fused_target is written for AGSM on a UNet (its EMA pass at x_t)")
        if not self.device.startswith("cuda"):
            import resource

            OptionBench.build_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            with open("/proc/self/clear_refs", "w") as f:  # peak RSS from here on: weights + the steps' needs
                f.write("5")

    def _step(self, step: int, meter=None) -> None:
        start = time.perf_counter()
        context = nullcontext()
        if self.option == "sdpa_math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            context = sdpa_kernel(SDPBackend.MATH)
        with context:
            if self.option == "fused_target":
                self._fused_step(step)
            else:
                super()._step(step, meter)
        if OptionBench.first_step_s is None:
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            OptionBench.first_step_s = time.perf_counter() - start

    def _fused_step(self, step: int) -> None:
        """AGSM's step (objectives/agsm.py) with the EMA and online passes in one forward; the loss is the same."""
        from agsm.backbones.base import TextCond
        from agsm.training.denoisers import update_ema
        from agsm.objectives.agsm import agsm_targets
        from agsm.objectives.pairs import PairBatch, draw_noise, per_pair_mse, tile

        den, config, images = self.denoiser, self.config, self.images
        batch = PairBatch(self.cached_x0, TextCond(**self.cached_text.tensors()), self.index, self.pos)
        g = torch.Generator().manual_seed(step)
        with self.autocast():
            x0 = batch.x0
            t, eps = draw_noise(den, x0, g, config.noise_sharing)
            x_t, y = den.add_noise(x0, eps, t), den.target(x0, eps, t)
            x_pairs, t_pairs, cond, set_index = tile(batch, x_t, t)  # AGSM at x_t: both passes see the same pairs
            n = len(x_pairs)
            both = _TwoTokenSets(self.ema, self.tokens, n)
            with den.injector.use(both, torch.cat([set_index, set_index])):
                out = den.backbone.predict(torch.cat([x_pairs, x_pairs]), torch.cat([t_pairs, t_pairs]),
                                           TextCond.cat([cond, cond]))
            ema_pred, pred = out[:n].detach().reshape(images, images, *x0.shape[1:]), out[n:]
            targets, _ = agsm_targets(y, ema_pred, self.pos.to(x0.device), config.gamma_pos, config.gamma_neg,
                                      config.temperature)
            mse = per_pair_mse(pred, targets.flatten(0, 1))
            positive = batch.positive_mask().flatten()
            loss = mse[positive].mean() + mse[~positive].mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        update_ema(self.ema, self.tokens, 0.9999)


class _TwoTokenSets:
    """Token source for one batched call: the EMA tokens for the first n samples, the online tokens for the rest."""

    def __init__(self, ema, online, n: int):
        self.ema, self.online, self.n, self.sets = ema, online, n, online.sets

    def __call__(self, set_index: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = self.n
        return torch.cat([self.ema(set_index[:n], t[:n]), self.online(set_index[n:], t[n:])])


def measure(model: str, option: str, precision: str, steps: int, latent: int, device: str, gemm_size: int) -> dict:
    """One row, in this process."""
    OptionBench.option = option
    row = run_one(model, "agsm", "ours", precision, steps, 4, latent, device, gemm_size, bench_class=OptionBench)
    return {**row, "option": option, "first_step_s": OptionBench.first_step_s,
            "build_peak_mib": OptionBench.build_peak_mib,
            "peak_mib_meaning": "peak allocated" if device.startswith("cuda") else "peak RSS after the build"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "sd15"], choices=["tiny", "sd15"])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"],
                        help="every row's precision (bf16: the shipped configs' train.mixed_precision)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (after 3 warm-up steps)")
    parser.add_argument("--sd15-steps", type=int, default=2, help="timed steps per sd15 row")
    parser.add_argument("--latent", type=int, default=8, help="sd15 latent side (tiny is 16)")
    parser.add_argument("--compile-on", nargs="*", default=["tiny"],
                        help="models whose compile row is measured (a cold compile of SD1.5 on a CPU takes minutes)")
    parser.add_argument("--cold-compile", action="store_true", help="compile rows start from an empty inductor cache")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--json", default="benchmarks/step_options.json")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "OPTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # child process: one row, printed as JSON
        model, option = args.one
        steps = args.steps if model == "tiny" else args.sd15_steps
        latent = 16 if model == "tiny" else args.latent
        print(json.dumps(measure(model, option, args.precision, steps, latent, args.device, args.gemm_size)))
        return

    rows = []
    for model in args.models:
        for option in args.options:
            if option == "compile" and model not in args.compile_on:
                continue
            cmd = [sys.executable, __file__, "--one", model, option, "--precision", args.precision,
                   "--steps", str(args.steps), "--sd15-steps", str(args.sd15_steps), "--latent", str(args.latent),
                   "--device", args.device, "--gemm-size", str(args.gemm_size)]
            env = dict(os.environ)
            with tempfile.TemporaryDirectory() as cache:
                if option == "compile" and args.cold_compile:
                    env["TORCHINDUCTOR_CACHE_DIR"] = cache
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"{model} {option} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["compile_cache"] = ("empty (cold)" if args.cold_compile else "default (may be warm)") \
                if option == "compile" else None
            rows.append(row)
            print(f"measured {model} {option}: {row['seconds_per_step']:.3f} s/step", flush=True)

    print(f"\nSpeed options, one at a time (AGSM 'ours', 16 pairs/step, {args.precision}, {args.device}, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'model':5s} {'option':22s} {'s/step':>8s} {'pairs/s':>8s} {'vs base':>8s} {'GFLOP':>8s} {'peak TF/s':>9s} "
          f"{'MFU':>6s} {'peak mem':>10s} {'mem vs base':>11s} {'first step':>10s}")
    for row in rows:
        base = next((r for r in rows if r["model"] == row["model"] and r["option"] == "baseline"), None)
        speed = f"{row['pairs_per_s'] / base['pairs_per_s']:7.2f}x" if base else f"{'-':>8s}"
        memory = f"{row['peak_mib'] / base['peak_mib']:10.2f}x" if base else f"{'-':>11s}"
        print(f"{row['model']:5s} {row['option']:22s} {row['seconds_per_step']:8.3f} {row['pairs_per_s']:8.2f} "
              f"{speed} {row['gflop_per_step']:8.2f} {row['peak_tflops']:9.3f} {row['mfu']:6.1%} "
              f"{row['peak_mib']:6.0f} MiB {memory} "
              f"{row['first_step_s']:9.2f}s")
    Path(args.json).write_text(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
        "precision": args.precision, "cold_compile": args.cold_compile, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
