"""The measurements of the GPU check (benchmarks/gpu_check.py), each returning rows (dicts), on pipelines of the real
architectures with random weights built on the device: train_row (a method's steps at one precision through the
trainer's own pieces: make_trainable, the method's step, prepare_denoiser, autocast, a GradScaler in fp16; counted
FLOPs, MFU, peak memory), sample_rows (sampling_overhead.py's measure), edit_row (the family's editor with tokens),
environment_rows (card, libraries, MFU peak, GEMMs), equal_precision_pair (train_step.py's run_one, public and ours).
"""
from __future__ import annotations

import gc
import resource
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # flops.py, train_step.py, sampling_overhead.py
from flops import DTYPES, PhasedDenoiser, count_phases, machine_peak, measure_gemm_tflops, table_peak_tflops  # noqa

ARCHITECTURES = ("sd15", "sdxl", "sd3")
TOKEN_METHODS = ("agsm", "softrepa", "dsm")
EDITOR = {"sd15": "pnp", "sd3": "flowedit"}  # one editor per family: UNet feature injection, flow editing
PRECISION_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
CAPTIONS = ["a red circle", "two blue squares", "a green triangle above a yellow circle", "three purple squares"]


@dataclass(frozen=True)
class Size:
    latent: int        # latent side: images are 8x larger
    images: int        # images per token-method step; each meets every caption: images^2 pairs
    pairs: int         # preference pairs per DPO step
    warmup: int        # untimed steps first (kernel choice, allocator)
    steps: int         # timed steps
    sample_steps: int  # sampler steps per pipeline call
    repeats: int       # timed sampling rounds
    edit_steps: int


# Full: the native resolutions; SDXL and SD3 at 1024 px take 2 images (4 pairs) so a step fits beside the weights.
SIZES = {"toy": {a: Size(16, 2, 2, 0, 1, 1, 1, 2) for a in ARCHITECTURES},
         "full": {"sd15": Size(64, 4, 4, 2, 3, 10, 2, 10), "sdxl": Size(128, 2, 2, 2, 3, 10, 2, 10),
                  "sd3": Size(128, 2, 2, 2, 3, 10, 2, 10)}}


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def sync(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float:
    """Peak allocated GPU memory since the last reset_peak; on the CPU the process's peak resident set (never reset)."""
    if is_cuda(device):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release(device: str) -> None:
    gc.collect()
    if is_cuda(device):
        torch.cuda.empty_cache()


def build_on_device(architecture: str, scale: str, device: str, seed: int = 0):
    """The pipeline constructed where it runs, in float32: billions of random weights are drawn in moments on a GPU
    and slowly on the host. The scheduler is made again outside, its tables on the host as diffusers keeps them."""
    from agsm.backbones.architectures import build_pipeline

    with torch.device(device):
        pipe = build_pipeline(architecture, scale, seed=seed)
    pipe.to(device)  # anything a constructor made on the host on purpose (a position table from numpy, say)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def backbone_of(pipe):
    from agsm.backbones.mmdit import MMDiTBackbone
    from agsm.backbones.unet import UNetBackbone

    return UNetBackbone(pipe) if getattr(pipe, "unet", None) is not None else MMDiTBackbone(pipe)


@contextmanager
def swapped(module, name: str, value):
    """module.name replaced for a block: the benchmarks' own measurement functions, fed this check's pipelines."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class Peaks:
    """The MFU denominator per precision (flops.machine_peak), measured once per process."""

    def __init__(self, device: str, gemm_size: int):
        self.device, self.gemm_size, self.known = device, gemm_size, {}

    def __call__(self, precision: str) -> dict:
        if precision not in self.known:
            self.known[precision] = machine_peak(precision, self.device, self.gemm_size)
        return self.known[precision]


# --- rows -----------------------------------------------------------------------------------------------------------

def environment_rows(device: str, scale: str):
    import accelerate
    import diffusers
    import peft
    import transformers

    name = torch.cuda.get_device_name() if is_cuda(device) else "cpu"
    table = table_peak_tflops(name) if is_cuda(device) else None
    info = {"device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers":
            diffusers.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "peft": peft.__version__, "python": sys.version.split()[0], "threads": torch.get_num_threads(),
            "peak_tflops": table, "peak_source": f"datasheet dense bf16, {name}" if table else
            "a GEMM measured in each part (no datasheet peak for this device)"}
    if is_cuda(device):
        info["memory_mib"] = torch.cuda.get_device_properties(0).total_memory / 2**20
    yield {"row": "environment", "kind": "env", "info": info}
    n = 8192 if scale == "full" else 256
    for precision in ("bf16", "fp16"):
        started = time.perf_counter()
        achieved = measure_gemm_tflops(precision, device, n=n)
        row = {"row": f"gemm {precision} {n}^3", "kind": "gemm", "precision": precision,
               "seconds": time.perf_counter() - started, "tflops": achieved}
        if table:
            row.update(peak_tflops=table, mfu=achieved / table)
        yield row


def train_row(backbone, method: str, precision: str, device: str, size: Size, peaks: Peaks) -> dict:
    """Timed steps of `method` as `agsm train --train.mixed_precision <precision>` runs them: the pipeline stored in
    the precision, autocast, fp16 with loss scaling; tokens (or DPO's LoRA) kept in float32."""
    from agsm.objectives import PairBatch, get_method
    from agsm.objectives.pairs import in_batch_captions
    from agsm.objectives.preference_batch import PreferenceBatch
    from agsm.training.batches import step_generator
    from agsm.training.config import from_dict
    from agsm.training.speed import prepare_denoiser
    from agsm.training.trainables import make_trainable

    dtype, kind, pipe = DTYPES[precision], torch.device(device).type, backbone.pipe
    pipe.to(dtype=dtype)
    spec = get_method(method)
    config = from_dict({"method": {"name": method}, "train": {"mixed_precision": precision}})
    side = size.latent * pipe.vae_scale_factor
    count = size.images if spec.data == "captions" else 2 * size.pairs
    pixels = torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x0 = backbone.encode_images(pixels.to(device))
    if spec.data == "captions":
        index, pos = in_batch_captions(size.images, size.images)
        batch, work = PairBatch(x0, backbone.encode_text(CAPTIONS[:size.images]), index, pos), size.images ** 2
    else:
        batch = PreferenceBatch(x0[:size.pairs], x0[size.pairs:], backbone.encode_text(CAPTIONS[:size.pairs]),
                                CAPTIONS[:size.pairs])
        work = size.pairs
    trainable = make_trainable(config, backbone, SimpleNamespace(device=torch.device(device)))
    try:
        params = list(trainable.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-5)
        scaler = torch.amp.GradScaler(kind) if precision == "fp16" else None
        step_context = prepare_denoiser(backbone.denoiser, config.train, device, dtype)

        def step(index: int, meter=None) -> torch.Tensor:
            phase = meter.phase if meter is not None else (lambda name: nullcontext())
            denoiser = trainable.denoiser
            if meter is not None and spec.trains == "tokens":
                denoiser = PhasedDenoiser(denoiser, meter)  # target / online forward split (flops.py)
            with step_context():
                with torch.autocast(kind, dtype=dtype):
                    loss = spec.step(denoiser, batch, config.method, step_generator(0, index, 0))[0]
                with phase("backward"):
                    (loss if scaler is None else scaler.scale(loss)).backward()
            with phase("optimizer"):
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                optimizer.zero_grad(set_to_none=True)
                trainable.after_step()
            return loss.detach()

        for index in range(size.warmup):
            step(-1 - index)
        reset_peak(device)
        started = time.perf_counter()
        for index in range(size.steps):
            loss = step(index)
        sync(device)
        seconds = (time.perf_counter() - started) / size.steps
        memory, loss = peak_mib(device), float(loss)
        flops = count_phases(lambda meter: step(size.steps, meter))
    finally:
        trainable.remove()
    total, peak = sum(flops.values()), peaks(precision)
    trained = "tokens" if spec.trains == "tokens" else f"LoRA rank {config.tune.lora_rank} on the denoiser"
    return {"row": f"train {method} {precision}", "kind": "train", "method": method, "precision": precision,
            "trains": trained, "work_per_step": work, "unit": "pairs/s", "latent": size.latent,
            "s_per_step": seconds, "rate": work / seconds, "gflop_per_step": total / 1e9, "flops": flops,
            "tflops": total / seconds / 1e12, "peak_tflops": peak["peak_tflops"], "peak_source": peak["peak_source"],
            "mfu": total / seconds / 1e12 / peak["peak_tflops"], "peak_mib": memory, "loss": loss}


def sample_rows(pipe, architecture: str, scale: str, device: str, size: Size):
    """Pipeline calls without and with tokens: benchmarks/sampling_overhead.py's measurement on this pipeline."""
    import sampling_overhead

    from agsm.pipelines import denoiser_of

    dtype = "float16" if is_cuda(device) else "float32"  # that benchmark's defaults
    pipe.to(dtype=getattr(torch, dtype))  # measure() casts only to a reduced precision
    reset_peak(device)
    with swapped(sampling_overhead, "build", lambda *args, **kwargs: pipe):
        result = sampling_overhead.measure(architecture, scale=scale, latent=size.latent, steps=size.sample_steps,
                                           repeats=size.repeats, warmup=min(size.warmup, 1),
                                           modes=("positive", "negative"), device=device, dtype=dtype,
                                           log=lambda text: print(text, flush=True))
    memory, model = peak_mib(device), denoiser_of(pipe)
    for hooks in (model._forward_pre_hooks, model._forward_hooks):  # measure()'s clock stays on the denoiser it
        for key in [k for k, hook in hooks.items()  # was given, timing every later call: taken off here
                    if isinstance(getattr(hook, "__self__", None), sampling_overhead.DenoiserClock)]:
            del hooks[key]
    for r in result["rows"]:
        yield {"row": f"sample, {r['mode']} tokens", "kind": "sample", "precision": PRECISION_NAMES[dtype],
               "unit": "images/s", "latent": size.latent, "sampler_steps": size.sample_steps,
               "s_per_call": r["seconds_with"],
               "rate": r["images_per_s_with"], "rate_without": r["images_per_s_without"],
               "overhead_pct": r["overhead_pct"], "flops_overhead_pct": r["flops_overhead_pct"],
               "gflop_per_call": r["flops_with"]["pipeline"] / 1e9, "peak_mib": memory}


def edit_row(pipe, architecture: str, device: str, size: Size) -> dict:
    """One edit with the sampling row's tokens active (they take part in every prediction of the edit)."""
    import numpy as np
    from PIL import Image

    from agsm.editing import edit
    from agsm.pipelines import set_soft_tokens_adapter

    injector = set_soft_tokens_adapter(pipe, "positive")
    injector.state = type(injector.state)()  # cleared, so the check below sees this edit's tokens
    side = size.latent * pipe.vae_scale_factor
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    reset_peak(device)
    started = time.perf_counter()
    edited = edit(pipe, image, "a red circle", "a blue circle", method=EDITOR[architecture], steps=size.edit_steps,
                  progress=False)
    sync(device)
    seconds = time.perf_counter() - started
    if injector.state.tokens is None:
        raise AssertionError(f"{EDITOR[architecture]}: the edit injected no tokens")
    return {"row": f"edit {EDITOR[architecture]} + tokens", "kind": "edit",
            "precision": PRECISION_NAMES[str(pipe.dtype).removeprefix("torch.")],
            "unit": "edits/s", "latent": size.latent, "sampler_steps": size.edit_steps, "s_per_call": seconds,
            "rate": 1 / seconds, "peak_mib": peak_mib(device), "mean_pixel": float(np.asarray(edited).mean())}


def equal_precision_pair(method: str, precision: str, scale: str, device: str, gemm_size: int) -> list:
    """benchmarks/train_step.py's rows for one method at one precision, public then ours, through its run_one, each
    on a fresh pipeline built on the device (ours stores it in the precision, public keeps float32 weights)."""
    import train_step

    model, latent, steps, images = ("tiny", 16, 1, 2) if scale == "toy" else ("sd15", 64, 3, 4)

    def build(name, where):
        return backbone_of(build_on_device("sd15", "toy" if name == "tiny" else "full", where))

    rows = {}
    for mode in ("public", "ours"):
        with swapped(train_step, "build", build):
            r = train_step.run_one(model, method, mode, precision, steps, images, latent, device, gemm_size)
        release(device)
        rows[mode] = {"row": f"{mode} {method} {precision}", "kind": "equal", "method": method, "mode": mode,
                      "precision": precision, "unit": "pairs/s", "latent": latent, "work_per_step": r["pairs_per_step"],
                      "s_per_step": r["seconds_per_step"], "rate": r["pairs_per_s"],
                      "gflop_per_step": r["gflop_per_step"], "tflops": r["achieved_tflops"],
                      "peak_tflops": r["peak_tflops"], "peak_source": r["peak_source"], "mfu": r["mfu"],
                      "peak_mib": r["peak_mib"]}
    rows["ours"]["vs_public"] = rows["ours"]["rate"] / rows["public"]["rate"]
    rows["ours"]["memory_vs_public"] = rows["ours"]["peak_mib"] / rows["public"]["peak_mib"]
    return [rows["public"], rows["ours"]]
