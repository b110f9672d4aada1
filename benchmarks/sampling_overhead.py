"""Sampling cost of soft tokens (issue 17, item 4): images/s of a stock diffusers pipeline with and without tokens.

    python benchmarks/sampling_overhead.py                                   # SD1.5, SDXL, SD3 on the CPU, latent 8
    python benchmarks/sampling_overhead.py --models sd15 sd3 --steps 2 --repeats 3
    python benchmarks/sampling_overhead.py --device cuda                     # native sizes (64 / 128 / 128), fp16
    python benchmarks/sampling_overhead.py --models sd3 --profile            # where the extra time goes, op by op
    python benchmarks/sampling_overhead.py --meta-flops                      # FLOPs only, no weights: any machine

What is measured: whole pipeline calls `pipe(prompts, num_inference_steps, guidance_scale, height, width,
generator)` as `agsm sample` makes them (one CPU generator per image, guidance on, so classifier-free guidance
doubles the denoiser's batch; SD3 with the stock 256 zero T5 tokens unless `--fast-sampling`), on a pipeline of
the real architecture at its published size with random weights (agsm.backbones.architectures). Target: overhead <= 3%.

Tokens go in the way users load them: random soft tokens of the package's default shape (TokenConfig: 4 tokens,
UNet stages down + mid, MM-DiT 4 tokens in each of the first 5 blocks; both sets psi+ and psi- as AGSM trains
them), written by the package's own writer (token_file.save_tokens, with the trained_on record and its denoiser
hash) and read by `load_soft_tokens`, once per mode under its own adapter name:
- positive: `load_soft_tokens(pipe, path)`, the default: psi+ in both guidance branches;
- negative: `uncond_tokens="negative"`: psi- in the unconditional branch;
- scale0.5 (optional): `scale=0.5`, which runs every token layer's attention twice (tokens.injector).
"without" is the same pipeline with no adapter active (`set_soft_tokens_adapter(pipe, None)`), checked to be stock:
no agsm processor or hook left on the denoiser.

Noise control: after `--warmup` rounds, `--repeats` rounds each call every condition once, in an order reversed
every other round (without, positive, negative, then negative, positive, without ...), so slow drifts hit all
conditions alike. Reported: the median call time per condition (images/s = batch / median) and the overhead as the
median over rounds of the paired ratio t_with / t_without - 1 (min and max beside it). The denoiser's own calls
are timed too (hooks around the UNet / transformer, token preparation inside), giving the overhead on the part the
tokens touch, undiluted by text encoding and VAE decoding. Noise-free beside them: the matrix-product and
convolution FLOPs of one call per condition (torch.utils.flop_counter), pipeline and denoiser, i.e. the compute the
tokens add. `--profile` adds, per mode, a profile of one call without and one with tokens listing the ops whose
time grew (ops only the token path runs have a call count of 0 without tokens) and, on CUDA, the number of
implicit host-device synchronisations per call (torch's sync debug mode).

Each architecture runs in its own process (`--same-process` to skip), so one model's memory and threads never
slow the next. Prints a table and writes JSON (default benchmarks/sampling_overhead_<cpu|cuda>.json).
Over 300 lines: one measurement (build, load, interleaved timing, FLOPs, profile) and its command line together.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/flops.py

ARCHITECTURES = ("sd15", "sdxl", "sd3")
# mode -> load_soft_tokens keyword arguments
MODES = {"positive": {}, "negative": {"uncond_tokens": "negative"}, "scale0.5": {"scale": 0.5}}
PROMPTS = ["a red circle above a blue square", "two green triangles", "a photo of a cat", "three yellow circles",
           "a dog left of a purple square", "an orange triangle", "four white squares", "a black circle"]
NATIVE_LATENT = {"sd15": 64, "sdxl": 128, "sd3": 128}


# --- models -------------------------------------------------------------------------------------------------------

def build(architecture: str, scale: str, seed: int = 0):
    from agsm.backbones.architectures import build_pipeline

    return build_pipeline(architecture, scale, seed=seed)


# --- tokens -------------------------------------------------------------------------------------------------------

def write_random_tokens(pipe, folder: Path, seed: int = 0) -> tuple[Path, dict]:
    """A token file for `pipe` as `agsm train` writes one with the default TokenConfig (and both sets, as AGSM has),
    random values. Returns its path and the placement."""
    from agsm.backbones.variants import trained_on
    from agsm.training.config import TokenConfig
    from agsm.pipelines import denoiser_of, pipeline_architecture
    from agsm.tokens.token_file import save_tokens
    from agsm.tokens import SoftTokens, placement_for

    architecture = pipeline_architecture(pipe)
    family = "mmdit" if architecture == "sd3" else "unet"
    model = denoiser_of(pipe)
    width = model.config.caption_projection_dim if family == "mmdit" else model.config.cross_attention_dim
    steps = pipe.scheduler.config.num_train_timesteps
    defaults = TokenConfig()
    blocks = min(defaults.blocks, len(model.transformer_blocks)) if family == "mmdit" else defaults.blocks
    count = defaults.num_tokens * (blocks if family == "mmdit" else 1)
    torch.manual_seed(seed)
    tokens = SoftTokens(count, width, num_sets=2, num_buckets=defaults.num_buckets, num_train_timesteps=steps,
                        init_std=defaults.init_std, time_init_std=0.02)  # a non-zero time table, as after training
    info = {"family": family, "architecture": architecture, "token_width": width, "num_train_timesteps": steps}
    placement = placement_for(family, defaults.stages, blocks)
    path = save_tokens(folder / "soft_tokens.safetensors", tokens, info, placement, "agsm", {}, 0,
                       weights="online", trained_on=trained_on(pipe, f"random-{architecture}", None))
    return path, placement


def assert_stock(model) -> None:
    """No agsm processor or hook anywhere in the denoiser (the clock's two hooks on the root excepted)."""
    from agsm.tokens import TokenProcessor

    wrapped = [name for name, p in model.attn_processors.items() if isinstance(p, TokenProcessor)]
    hooked = [name for name, m in model.named_modules() if name and (m._forward_pre_hooks or m._forward_hooks)]
    extra = len(model._forward_pre_hooks) + len(model._forward_hooks) - 2
    if wrapped or hooked or extra:
        raise AssertionError(f"'without' is not the stock denoiser: {len(wrapped)} token processors, hooks on "
                             f"{hooked[:3]}, {extra} extra root hooks")


# --- timing -------------------------------------------------------------------------------------------------------

class DenoiserClock:
    """Times every denoiser call: a pre-hook put before all others (so the tokens' preparation, a later pre-hook,
    is inside) and a forward hook. CUDA: events, read after the pipeline call, so no extra synchronisation."""

    def __init__(self, model, cuda: bool):
        self.cuda, self.marks = cuda, []
        self.handles = [model.register_forward_pre_hook(self._begin, prepend=True),
                        model.register_forward_hook(self._end)]

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _begin(self, module, args):
        self.marks.append([self._mark(), None])

    def _end(self, module, args, output):
        self.marks[-1][1] = self._mark()

    def take(self) -> float:
        """Seconds spent in the denoiser since the last take."""
        if self.cuda:
            total = sum(a.elapsed_time(b) for a, b in self.marks) / 1000
        else:
            total = sum(b - a for a, b in self.marks)
        self.marks = []
        return total


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(architecture: str, *, scale: str = "full", latent: int = 8, steps: int = 4, batch: int = 1,
            guidance: float = 5.0, repeats: int = 5, warmup: int = 1, modes=("positive", "negative"),
            device: str = "cpu", dtype: str = "float32", fast_sampling: bool = False, profile: bool = False,
            count: bool = True, seed: int = 0, log=print) -> dict:
    """One architecture: build, load tokens under every mode, time interleaved rounds; returns a result dict."""
    from agsm.backbones.t5_free import fast_sampling as fast_sampling_kwargs
    from agsm.backbones.variants import forget_content_hash
    from agsm.utils.devices import DTYPE_NAMES
    from agsm.pipelines import denoiser_of, load_soft_tokens, set_soft_tokens_adapter

    started = time.perf_counter()
    pipe = build(architecture, scale, seed)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if DTYPE_NAMES[dtype] != torch.float32:  # the builders make float32 weights
        pipe = pipe.to(DTYPE_NAMES[dtype])
    model = denoiser_of(pipe)
    built = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    log(f"{architecture}: built {scale} pipeline in {built:.1f} s, denoiser {params / 1e6:.0f} M parameters")
    clock = DenoiserClock(model, device.startswith("cuda"))

    with tempfile.TemporaryDirectory() as folder:
        path, placement = write_random_tokens(pipe, Path(folder), seed)
        forget_content_hash(model)  # a fresh pipeline's first load hashes its denoiser: time that too
        load_seconds = {}
        for mode in modes:
            begin = time.perf_counter()
            load_soft_tokens(pipe, path, adapter_name=mode, **MODES[mode])
            load_seconds[mode] = time.perf_counter() - begin
    injectors = {}
    conditions = ["without", *modes]
    pixels = latent * pipe.vae_scale_factor
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]

    def activate(condition):
        injector = set_soft_tokens_adapter(pipe, None if condition == "without" else condition)
        if injector is None:
            assert_stock(model)
        else:
            injectors[condition] = injector
            injector.state = type(injector.state)()  # cleared, so the check below sees this call's tokens
        return injector

    def call() -> float:
        generators = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(batch)]
        with fast_sampling_kwargs(pipe) if fast_sampling else contextlib.nullcontext({}) as extra:
            _sync(device)
            begin = time.perf_counter()
            pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, height=pixels, width=pixels,
                 generator=generators, **extra)
            _sync(device)
            return time.perf_counter() - begin

    seconds = {c: [] for c in conditions}
    denoiser_seconds = {c: [] for c in conditions}
    for round_index in range(-warmup, repeats):
        order = conditions if round_index % 2 == 0 else conditions[::-1]
        for condition in order:
            injector = activate(condition)
            clock.take()
            elapsed = call()
            in_denoiser = clock.take()
            if injector is not None and injector.state.tokens is None:
                raise AssertionError(f"{condition}: the pipeline call injected no tokens")
            if round_index >= 0:
                seconds[condition].append(elapsed)
                denoiser_seconds[condition].append(in_denoiser)
        if round_index >= 0:
            log(f"  round {round_index + 1}/{repeats}: " +
                ", ".join(f"{c} {seconds[c][-1]:.3f} s" for c in conditions))

    flops = count_flops(activate, call, conditions, type(model).__name__) if count else None
    rows = []
    base, base_denoiser = statistics.median(seconds["without"]), statistics.median(denoiser_seconds["without"])
    for mode in modes:
        ratios = [w / wo - 1 for w, wo in zip(seconds[mode], seconds["without"])]
        denoiser_ratios = [w / wo - 1 for w, wo in zip(denoiser_seconds[mode], denoiser_seconds["without"])]
        with_tokens = statistics.median(seconds[mode])
        rows.append({
            "architecture": architecture, "mode": mode, "load_kwargs": MODES[mode],
            "load_seconds": load_seconds[mode],
            "seconds_without": base, "seconds_with": with_tokens,
            "images_per_s_without": batch / base, "images_per_s_with": batch / with_tokens,
            "overhead_pct": 100 * statistics.median(ratios),
            "overhead_pct_min": 100 * min(ratios), "overhead_pct_max": 100 * max(ratios),
            "denoiser_seconds_without": base_denoiser,
            "denoiser_seconds_with": statistics.median(denoiser_seconds[mode]),
            "denoiser_overhead_pct": 100 * statistics.median(denoiser_ratios),
            "token_layers": len(injectors[mode].attentions),
        })
        if flops:
            rows[-1].update({
                "flops_without": flops["without"], "flops_with": flops[mode],
                "flops_overhead_pct": 100 * (flops[mode]["pipeline"] / flops["without"]["pipeline"] - 1),
                "denoiser_flops_overhead_pct": 100 * (flops[mode]["denoiser"] / flops["without"]["denoiser"] - 1)})
    result = {"architecture": architecture, "scale": scale, "denoiser_parameters": params, "latent": latent,
              "pixels": pixels, "steps": steps, "batch": batch, "guidance": guidance,
              "denoiser_batch": 2 * batch if guidance > 1 else batch, "device": device, "dtype": dtype,
              "fast_sampling": fast_sampling, "placement": placement, "build_seconds": built,
              "repeats": repeats, "warmup": warmup, "seconds": seconds, "denoiser_seconds": denoiser_seconds,
              "rows": rows}
    if profile:
        result["profile"] = {mode: profile_calls(activate, call, mode, device, log) for mode in modes}
    del pipe, model, clock, injectors
    gc.collect()
    return result


def flop_counter():
    """torch's FlopCounterMode, also counting the CPU's fused attention kernel (benchmarks/flops.py)."""
    from torch.utils.flop_counter import FlopCounterMode

    from flops import _cpu_sdpa_mapping

    return FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping())


def count_flops(activate, call, conditions, denoiser_class: str) -> dict:
    """Matrix-product and convolution FLOPs of one call per condition (torch.utils.flop_counter): exact and free of
    timing noise, the compute the tokens add; element-wise work and per-op overhead are not in it."""
    flops = {}
    for condition in conditions:
        activate(condition)
        with flop_counter() as counter:
            call()
        counts = counter.get_flop_counts()
        flops[condition] = {"pipeline": sum(counts.get("Global", {}).values()),
                            "denoiser": sum(counts.get(denoiser_class, {}).values())}
    return flops


def profile_calls(activate, call, mode: str, device: str, log, top: int = 20) -> list[dict]:
    """One call without and one with tokens under torch.profiler; the ops whose self time grew most, with counts.
    Ops only the token path runs (the context concatenation, the token table lookup ...) show up with a count
    that is zero without tokens."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    tables = {}
    for condition in ("without", mode):
        activate(condition)
        call()  # warm
        with profile(activities=activities) as prof:
            call()
        key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
        tables[condition] = {e.key: (e.count, getattr(e, key, 0) / 1e3) for e in prof.key_averages()}
    names = set(tables["without"]) | set(tables[mode])
    diff = []
    for name in names:
        count_0, ms_0 = tables["without"].get(name, (0, 0.0))
        count_1, ms_1 = tables[mode].get(name, (0, 0.0))
        diff.append({"op": name, "count_without": count_0, "count_with": count_1, "ms_without": ms_0,
                     "ms_with": ms_1, "ms_delta": ms_1 - ms_0})
    diff.sort(key=lambda d: -abs(d["ms_delta"]))
    if device.startswith("cuda"):
        syncs = {condition: count_syncs(activate, call, condition) for condition in ("without", mode)}
        log(f"  implicit host-device synchronisations per call (torch.cuda sync debug mode): without "
            f"{syncs['without']}, {mode} {syncs[mode]}")
        diff.insert(0, {"op": "implicit host-device syncs", "count_without": syncs["without"],
                        "count_with": syncs[mode], "ms_without": 0.0, "ms_with": 0.0, "ms_delta": 0.0})
    total_0 = sum(ms for _, ms in tables["without"].values())
    total_1 = sum(ms for _, ms in tables[mode].values())
    log(f"  profile ({'device' if device.startswith('cuda') else 'CPU'} self time): without {total_0:.1f} ms, "
        f"{mode} {total_1:.1f} ms; largest changes:")
    log(f"  {'op':40s} {'calls w/o':>9s} {'calls w/':>9s} {'ms w/o':>9s} {'ms w/':>9s} {'delta':>8s}")
    for d in diff[:top]:
        log(f"  {d['op'][:40]:40s} {d['count_without']:9d} {d['count_with']:9d} {d['ms_without']:9.2f} "
            f"{d['ms_with']:9.2f} {d['ms_delta']:+8.2f}")
    return diff[:top]


def count_syncs(activate, call, condition: str) -> int:
    """Synchronising CUDA operations (a blocking host-to-device copy, .item(), nonzero ...) in one call, as torch's
    sync debug mode reports them; the explicit torch.cuda.synchronize around the call is not counted."""
    import warnings

    activate(condition)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def meta_flops(architecture: str, scale: str = "full", latents=(8, 64), fast_sampling: bool = False,
               modes=("positive", "scale0.5"), log=print) -> list[dict]:
    """Denoiser FLOPs per call (one image with guidance: batch 2) without and with tokens, on the meta device: no
    weights are allocated and nothing is computed, so any architecture at any latent size takes seconds on any
    machine. The denoiser alone: text encoders and the VAE run the same with and without tokens, so the
    pipeline's overhead is smaller still. 'negative' has the shapes, so the FLOPs, of 'positive'."""
    from agsm.backbones.t5_free import collapsed_zero_tokens
    from agsm.training.config import TokenConfig
    from agsm.pipelines import denoiser_of
    from agsm.tokens import SoftTokens, install_tokens, placement_for

    with torch.device("meta"):
        pipe = build(architecture, scale)
    model, defaults, rows = denoiser_of(pipe), TokenConfig(), []
    text = pipe.tokenizer.model_max_length  # CLIP positions: 77 at full scale
    for latent in latents:
        batch, meta = 2, {"device": "meta"}
        if architecture == "sd3":
            config = model.config
            context = text + (1 if fast_sampling else 256)  # CLIP, then the zero T5 tokens (t5_free.py)
            inputs = {"hidden_states": torch.empty(batch, config.in_channels, latent, latent, **meta),
                      "encoder_hidden_states": torch.empty(batch, context, config.joint_attention_dim, **meta),
                      "pooled_projections": torch.empty(batch, config.pooled_projection_dim, **meta),
                      "timestep": torch.full((batch,), 500.0, **meta)}
            family, width = "mmdit", config.caption_projection_dim
            blocks = min(defaults.blocks, len(model.transformer_blocks))
            count = defaults.num_tokens * blocks
        else:
            config, context = model.config, text
            inputs = {"sample": torch.empty(batch, config.in_channels, latent, latent, **meta),
                      "timestep": torch.full((batch,), 500, dtype=torch.long, **meta),
                      "encoder_hidden_states": torch.empty(batch, text, config.cross_attention_dim, **meta)}
            if config.addition_embed_type == "text_time":  # SDXL: pooled text and six time ids
                pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
                inputs["added_cond_kwargs"] = {"text_embeds": torch.empty(batch, pooled, **meta),
                                               "time_ids": torch.empty(batch, 6, **meta)}
            family, width, blocks, count = "unet", config.cross_attention_dim, defaults.blocks, defaults.num_tokens

        def flops() -> int:
            # --fast-sampling: the one zero token acts as 256 in every joint attention, as in `agsm sample`
            collapse = (collapsed_zero_tokens(model, text) if architecture == "sd3" and fast_sampling
                        else contextlib.nullcontext())
            with collapse, flop_counter() as counter:
                model(**inputs)
            return counter.get_total_flops()

        without = flops()
        tokens = SoftTokens(count, width, num_sets=2).to("meta")
        row = {"architecture": architecture, "scale": scale, "latent": latent, "context": context,
               "denoiser_batch": batch, "flops_without": without}
        for mode in modes:
            injector = install_tokens(model, family, tokens, placement_for(family, defaults.stages, blocks))
            injector.scale = MODES[mode].get("scale", 1.0)
            if MODES[mode].get("uncond_tokens") == "negative":
                injector.set_index_fn = lambda n: torch.tensor([1] * (n // 2) + [0] * (n - n // 2))
            row[f"flops_{mode}"] = flops()
            row[f"overhead_pct_{mode}"] = 100 * (row[f"flops_{mode}"] / without - 1)
            injector.remove()
        rows.append(row)
        log(f"{architecture} latent {latent:3d}, context {context}: {without / 1e9:,.1f} GFLOP per denoiser call; "
            + ", ".join(f"{mode} {row[f'overhead_pct_{mode}']:+.3f}%" for mode in modes))
    return rows


# --- command line -------------------------------------------------------------------------------------------------

def table(results: list[dict]) -> str:
    lines = ["| architecture | mode | images/s without | images/s with | overhead % (min..max) | denoiser time % "
             "| FLOPs % pipeline / denoiser | load s |", "|---|---|---|---|---|---|---|---|"]
    for result in results:
        for r in result["rows"]:
            flops = (f"{r['flops_overhead_pct']:+.2f} / {r['denoiser_flops_overhead_pct']:+.2f}"
                     if "flops_overhead_pct" in r else "-")
            lines.append(f"| {r['architecture']} | {r['mode']} | {r['images_per_s_without']:.3f} | "
                         f"{r['images_per_s_with']:.3f} | {r['overhead_pct']:+.1f} ({r['overhead_pct_min']:+.1f}.."
                         f"{r['overhead_pct_max']:+.1f}) | {r['denoiser_overhead_pct']:+.1f} | {flops} | "
                         f"{r['load_seconds']:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--scale", default="full", choices=["full", "toy"],
                        help="full: published sizes (default); toy: agsm.backbones.architectures' toy models (smoke runs)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="weights' precision (default float32 on the CPU, float16 on CUDA)")
    parser.add_argument("--latent", type=int, default=None,
                        help="latent side; image side = 8 x latent (default 8 on the CPU, the native size on CUDA: "
                             "64 for SD1.5, 128 for SDXL and SD3)")
    parser.add_argument("--steps", type=int, default=4, help="inference steps per call")
    parser.add_argument("--batch", type=int, default=1, help="images per pipeline call (CFG doubles the UNet batch)")
    parser.add_argument("--guidance", type=float, default=5.0, help="guidance scale (> 1: CFG on)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; each calls every condition once")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--modes", nargs="+", default=["positive", "negative"], choices=list(MODES))
    parser.add_argument("--fast-sampling", action="store_true",
                        help="SD3 without T5 as `agsm sample` runs it: 256 zero T5 tokens collapsed to one")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one call without and one with tokens (each mode); CUDA: count syncs")
    parser.add_argument("--no-flops", action="store_true",
                        help="skip the FLOP count (one more call per condition, under torch's FLOP counter)")
    parser.add_argument("--meta-flops", action="store_true",
                        help="only count the denoiser's FLOPs with and without tokens on the meta device (no weights, "
                             "seconds, any machine), at latent 8 and the native size (or --latent)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    parser.add_argument("--same-process", action="store_true", help="run every architecture in this process")
    parser.add_argument("--out", default=None, help="JSON file (default benchmarks/sampling_overhead_<device>.json)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: one architecture, JSON on stdout
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.meta_flops and args.out is None:
        args.out = "benchmarks/sampling_overhead_flops.json"
    args.dtype = args.dtype or ("float16" if cuda else "float32")
    if args.guidance <= 1:
        parser.error("--guidance must be > 1: the benchmark measures sampling with classifier-free guidance")
    if args.out is None:
        args.out = f"benchmarks/sampling_overhead_{'cuda' if cuda else 'cpu'}.json"
    return args


def _latent(args, architecture: str) -> int:
    if args.latent is not None:
        return args.latent
    if args.device.startswith("cuda") and args.scale == "full":
        return NATIVE_LATENT[architecture]
    return 8


def _measure_args(args, architecture: str, log=print) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    return measure(architecture, scale=args.scale, latent=_latent(args, architecture), steps=args.steps,
                   batch=args.batch, guidance=args.guidance, repeats=args.repeats, warmup=args.warmup,
                   modes=tuple(args.modes), device=args.device, dtype=args.dtype, fast_sampling=args.fast_sampling,
                   profile=args.profile, count=not args.no_flops, log=log)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.one:
        result = _measure_args(args, args.one, log=lambda text: print(text, file=sys.stderr, flush=True))
        result["threads"] = torch.get_num_threads()
        print(json.dumps(result))
        return [result]
    if args.meta_flops:
        return _meta_flops_main(args, argv)
    results = []
    for architecture in args.models:
        if args.same_process:
            result = _measure_args(args, architecture)
            result["threads"] = torch.get_num_threads()
        else:
            child = [a for a in (argv if argv is not None else sys.argv[1:])]
            command = [sys.executable, str(Path(__file__).resolve()), *child, "--one", architecture]
            # stderr passes through (progress lines); stdout's last line is the result
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{architecture} failed (exit {done.returncode}); its output is above")
            result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(table([result]).split("\n", 2)[-1], flush=True)
    import diffusers

    environment = {"torch": torch.__version__, "diffusers": diffusers.__version__, "device": args.device,
                   "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else _cpu_name(),
                   "command": " ".join(["python", "benchmarks/sampling_overhead.py",
                                        *(argv if argv is not None else sys.argv[1:])])}
    print()
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"environment": environment, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results


def _meta_flops_main(args, argv) -> list[dict]:
    modes = list(dict.fromkeys(["positive", *args.modes, "scale0.5"]))
    rows = []
    for architecture in args.models:
        latents = [args.latent] if args.latent else sorted({8, NATIVE_LATENT[architecture]})
        if args.scale == "toy":
            latents = [args.latent or 8]
        rows += meta_flops(architecture, args.scale, latents, args.fast_sampling, tuple(modes))
    lines = ["| architecture | latent | context | GFLOP per denoiser call | " + " | ".join(
        f"{mode} FLOPs %" for mode in modes) + " |", "|---" * (4 + len(modes)) + "|"]
    for r in rows:
        lines.append(f"| {r['architecture']} | {r['latent']} | {r['context']} | {r['flops_without'] / 1e9:,.1f} | "
                     + " | ".join(f"{r[f'overhead_pct_{mode}']:+.3f}" for mode in modes) + " |")
    print("\n" + "\n".join(lines))
    command = " ".join(["python", "benchmarks/sampling_overhead.py", *(argv if argv is not None else sys.argv[1:])])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": command, "torch": torch.__version__, "rows": rows}, indent=2)
                              + "\n")
    print(f"wrote {args.out}")
    return rows


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
