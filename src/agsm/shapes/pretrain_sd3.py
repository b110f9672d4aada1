"""Pretrain the tiny SD3-architecture ShapesWorld model and save it as a stock StableDiffusion3Pipeline
(diffusers layout, no T5; load with `StableDiffusion3Pipeline.from_pretrained(dir, text_encoder_3=None,
tokenizer_3=None)` or `agsm.sample.load_pipeline(dir)`).

    python -m agsm.shapes.pretrain_sd3 --out src/agsm/shapes/models/sd3-tiny --work runs/pretrain-sd3 \
        --steps 30000 --seed 0 --device cuda --batch 256 --bf16
    agsm shapes pretrain-sd3 ...          (the same options)

Stages (rerun the same command after a kill: it resumes from the last atomic checkpoint in --work):
  1. data: render --n-images training scenes (suite compositions held out) and encode them once with the
     frozen sd15-tiny VAE (posterior mean and std, kept on the device);
  2. MM-DiT + both CLIP encoders from scratch, flow matching (x_t = (1 - s) x0 + s eps, s = t / 1000,
     target eps - x0) with logit-normal s, 10% empty captions, the text conditioning exactly as the stock
     pipeline builds it (penultimate CLIP states side by side + 256 zero tokens for the absent T5; the zero
     tokens travel as one, see sd3_conditioning.py, checked against the stock context before training);
  3. export: the EMA weights as a pipeline folder + train_info.json.
Every draw of step k comes from a generator seeded by (seed, k), so a resumed run equals an uninterrupted one.
No host sync inside the loop except at logging and checkpoint steps.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import platform
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import tiny_models as tm
from .dataset import training_samples
from .pretrain import _cosine_lr, _rng, _save_atomic, _to_model, _tokenize
from .render import render
from .sd3_conditioning import T5_TOKENS, check_collapse, collapsed_zero_tokens, encode_ids

log = logging.getLogger("agsm.shapes.pretrain_sd3")

SD15_VAE = Path(__file__).parent / "models" / "sd15-tiny" / "vae"
STAGE = 4  # _rng stream of this command (pretrain.py uses 1-3)


@dataclass
class SD3PretrainConfig:
    out_dir: str
    work_dir: str
    steps: int = 30000
    seed: int = 0
    n_images: int = 100_000
    batch: int = 256
    lr: float = 5e-4
    warmup: int = 500
    weight_decay: float = 0.01
    caption_dropout: float = 0.1
    logit_mean: float = 0.0  # SD3's logit-normal timestep density, m = 0, s = 1
    logit_std: float = 1.0
    ema_decay: float = 0.9995
    checkpoint_every: int = 1000
    log_every: int = 250
    width: int = tm.SD3_WIDTH
    layers: int = tm.SD3_LAYERS
    heads: int = tm.SD3_HEADS
    dual_attention_layers: tuple[int, ...] = field(default=tm.SD3_DUAL_ATTENTION_LAYERS)
    text_hidden: int = tm.SD3_TEXT_HIDDEN
    text_layers: int = tm.SD3_TEXT_LAYERS
    vae: str = str(SD15_VAE)
    device: str = "cpu"
    bf16: bool = False
    compile: bool = False
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "n_images", "batch", "checkpoint_every", "log_every", "threads", "layers", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device} but torch sees no CUDA device; use --device cpu")
        self.dual_attention_layers = tuple(self.dual_attention_layers)


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def _render_chunk(scenes) -> np.ndarray:
    return np.stack([np.asarray(render(scene)) for scene in scenes])  # [n, 64, 64, 3] uint8


def _render_all(samples, chunk: int) -> list[np.ndarray]:
    """Rendered in worker processes (about 0.3 ms an image on one core): the GPU waits for no CPU work."""
    chunks = [[s.scene for s in samples[i : i + chunk]] for i in range(0, len(samples), chunk)]
    workers = min(len(chunks), os.cpu_count() or 1, 16)
    if workers < 2:
        return [_render_chunk(c) for c in chunks]
    from multiprocessing import get_context

    with get_context("fork").Pool(workers) as pool:  # children only draw with PIL: no CUDA, no torch threads
        return list(tqdm(pool.imap(_render_chunk, chunks), total=len(chunks), desc="render", unit="chunk"))


@torch.no_grad()
def encode_dataset(cfg: SD3PretrainConfig, vae, work: Path, chunk: int = 1024) -> dict:
    """Posterior mean and std of every training image under the frozen VAE, cached in --work."""
    key = {"n_images": cfg.n_images, "seed": cfg.seed, "vae": _fingerprint(Path(cfg.vae))}
    path = work / "latents.pt"
    if path.exists():
        cache = torch.load(path, weights_only=False)
        if cache["key"] == key:
            return cache
        log.info("cached latents were made for %s, not %s: encoding again", cache["key"], key)
    t0 = time.time()
    samples = training_samples(cfg.n_images, cfg.seed)
    pixels = _render_all(samples, chunk)
    vae = vae.to(cfg.device)
    means, stds = [], []
    for block in pixels:
        posterior = vae.encode(_to_model(torch.from_numpy(block)).to(cfg.device)).latent_dist
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
    cache = {"key": key, "mean": torch.cat(means), "std": torch.cat(stds), "captions": [s.prompt for s in samples],
             "wall": time.time() - t0}  # mean, std: [N, 4, 8, 8]
    _save_atomic(cache, path)
    log.info("rendered and encoded %d training images in %.0f s", len(samples), cache["wall"])
    return cache


def draw_batch(cfg: SD3PretrainConfig, step: int, data: dict) -> dict:
    """Everything random about step `step`, from one generator seeded by (seed, step), on the data's device."""
    device = data["mean"].device
    g = torch.Generator(device=device).manual_seed(_rng(cfg.seed, STAGE, step).initial_seed())
    idx = torch.randint(len(data["mean"]), (cfg.batch,), generator=g, device=device)
    mean, std = data["mean"][idx], data["std"][idx]
    z = mean + std * torch.randn(mean.shape, generator=g, device=device)
    x0 = (z - data["shift"]) * data["scale"]  # what the pipeline's decode inverts: z = x0 / scale + shift
    eps = torch.randn(x0.shape, generator=g, device=device)
    s = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(cfg.batch, generator=g, device=device))
    drop = (torch.rand(cfg.batch, generator=g, device=device) < cfg.caption_dropout)[:, None]
    ids = [torch.where(drop, empty, all_ids[idx]) for all_ids, empty in zip(data["ids"], data["empty_ids"])]
    xt = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
    return {"xt": xt, "timestep": s * 1000, "target": eps - x0, "ids": ids}


class _Models:
    """Online and EMA copies of the trained parts (transformer and both text encoders)."""

    names = ("transformer", "text_encoder", "text_encoder_2")

    def __init__(self, cfg: SD3PretrainConfig, tokenizer):
        torch.manual_seed(cfg.seed)  # weight initialisation
        self.online = {
            "transformer": tm.build_sd3_transformer(cfg.text_hidden, cfg.width, cfg.layers, cfg.heads,
                                                    cfg.dual_attention_layers),
            "text_encoder": tm.build_sd3_text_encoder(tokenizer, cfg.text_hidden, cfg.text_layers),
            "text_encoder_2": tm.build_sd3_text_encoder(tokenizer, cfg.text_hidden, cfg.text_layers),
        }
        self.ema = {k: copy.deepcopy(m).eval().requires_grad_(False) for k, m in self.online.items()}
        for m in [*self.online.values(), *self.ema.values()]:
            m.to(cfg.device)
        self.params = [p for m in self.online.values() for p in m.parameters()]
        self.ema_params = [p for m in self.ema.values() for p in m.parameters()]

    def text_encoders(self) -> tuple:
        return self.online["text_encoder"], self.online["text_encoder_2"]

    def update_ema(self, decay: float) -> None:
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.params, 1 - decay)

    def state(self) -> dict:
        return {**{k: m.state_dict() for k, m in self.online.items()},
                **{"ema_" + k: m.state_dict() for k, m in self.ema.items()}}

    def load(self, state: dict) -> None:
        for k in self.names:
            self.online[k].load_state_dict(state[k])
            self.ema[k].load_state_dict(state["ema_" + k])


_NOT_TRAINING = ("out_dir", "work_dir", "checkpoint_every", "log_every", "threads", "device", "compile")


def _settings(cfg: SD3PretrainConfig) -> dict:
    """The options that change the trained weights, JSON-normalised (tuples as lists)."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in _NOT_TRAINING}


def _resume(cfg: SD3PretrainConfig, models: _Models, opt, path: Path) -> tuple[int, float, list]:
    """(step, wall seconds, loss curve) from the checkpoint, if any; refuses one made with other settings."""
    if not path.exists():
        return 0, 0.0, []
    ckpt = torch.load(path, weights_only=False, map_location=cfg.device)
    changed = {k: (ckpt["settings"].get(k), v) for k, v in _settings(cfg).items() if ckpt["settings"].get(k) != v}
    if changed:
        raise ValueError(f"{path} was trained with other settings (checkpoint, now): {changed}; rerun with the "
                         "checkpoint's settings or give a new --work folder")
    models.load(ckpt["models"])
    opt.load_state_dict(ckpt["opt"])
    log.info("resumed at step %d", ckpt["step"])
    return ckpt["step"], ckpt["wall"], ckpt["losses"]


def train(cfg: SD3PretrainConfig, data: dict, tokenizer, work: Path) -> tuple[_Models, float, list]:
    models = _Models(cfg, tokenizer)
    cuda = cfg.device.startswith("cuda")
    opt = torch.optim.AdamW(models.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cuda or None)
    ckpt_path = work / "sd3.pt"
    step, wall, losses = _resume(cfg, models, opt, ckpt_path)
    transformer = models.online["transformer"]
    joint_dim = transformer.config.joint_attention_dim
    ids = draw_batch(cfg, 0, data)["ids"]
    diff = check_collapse(transformer, *encode_ids(*models.text_encoders(), ids[0][:2], ids[1][:2], joint_dim, 1))
    log.info("one collapsed zero token acts as the stock %d (relative difference %.1e)", T5_TOKENS, diff)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # for what autocast leaves in fp32; after the exact check

    def predict(ids, ids_2, xt, timestep):  # text encoders + transformer: one graph under --compile
        context, pooled = encode_ids(*models.text_encoders(), ids, ids_2, joint_dim, t5_tokens=1)
        return transformer(xt, context, pooled, timestep).sample

    forward = torch.compile(predict) if cfg.compile else predict
    autocast = torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    warmup = min(cfg.warmup, cfg.steps // 10)  # short runs still reach the peak rate
    loss_sum = torch.zeros((), device=cfg.device)
    t0, since, mark = time.time(), step, (time.time(), step)
    bar = tqdm(total=cfg.steps, initial=step, desc="sd3 pretrain", mininterval=5.0)
    with collapsed_zero_tokens(transformer):
        while step < cfg.steps:
            batch = draw_batch(cfg, step, data)
            with autocast:
                pred = forward(*batch["ids"], batch["xt"], batch["timestep"])
            loss = F.mse_loss(pred.float(), batch["target"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(models.params, 1.0, foreach=True)
            for group in opt.param_groups:
                group["lr"] = _cosine_lr(step, cfg.steps, cfg.lr, warmup)
            opt.step()
            models.update_ema(min(cfg.ema_decay, (1 + step) / (10 + step)))  # short memory early, as pretrain.py
            loss_sum += loss.detach()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean_loss = loss_sum.item() / (step - since)  # the only host sync between checkpoints
                losses.append([step, round(mean_loss, 5)])
                loss_sum.zero_()
                since = step
                bar.set_postfix(loss=f"{mean_loss:.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                now, elapsed = time.time(), wall + time.time() - t0
                rate = (now - mark[0]) / (step - mark[1])  # since the last checkpoint (the first includes compiling)
                _save_atomic({"models": models.state(), "opt": opt.state_dict(), "step": step, "wall": elapsed,
                              "losses": losses, "settings": _settings(cfg)}, ckpt_path)
                mark = (time.time(), step)
                log.info("step %d/%d loss %s, %.4f s/step, %.1f min in all", step, cfg.steps,
                         losses[-1][1] if losses else "-", rate, elapsed / 60)
    bar.close()
    if cuda:
        torch.cuda.synchronize()
    return models, wall + time.time() - t0, losses


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores"


def export(cfg: SD3PretrainConfig, models: _Models, vae, tokenizer, data: dict, walls: dict, losses: list,
           command: str) -> Path:
    import diffusers
    import transformers
    from diffusers import StableDiffusion3Pipeline

    parts = {k: m.to("cpu") for k, m in models.ema.items()}  # fp32 always: autocast never casts the weights
    pipe = StableDiffusion3Pipeline(
        transformer=parts["transformer"], scheduler=tm.build_flow_scheduler(), vae=vae.to("cpu"),
        text_encoder=parts["text_encoder"], tokenizer=tokenizer, text_encoder_2=parts["text_encoder_2"],
        tokenizer_2=copy.deepcopy(tokenizer), text_encoder_3=None, tokenizer_3=None)
    out = Path(cfg.out_dir)
    stale = out / "suite_scores.json"
    if stale.exists():  # scores of the previous weights
        stale.unlink()
        log.info("removed %s (it scored the previous weights)", stale)
    pipe.save_pretrained(out, safe_serialization=True)
    info = {
        "command": command,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_seconds": {k: round(v, 1) for k, v in walls.items()} | {"total": round(sum(walls.values()), 1)},
        "seconds_per_step": round(walls["train"] / cfg.steps, 4),  # over the whole run, compiling included
        "device": _device_name(cfg.device),
        "config": asdict(cfg),
        "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        | {"vae (frozen, from sd15-tiny)": sum(p.numel() for p in vae.parameters())},
        "conditioning": {"clip_tokens": tokenizer.model_max_length, "t5_zero_tokens": T5_TOKENS,
                         "joint_attention_dim": parts["transformer"].config.joint_attention_dim},
        "flow": "x_t = (1 - s) x0 + s eps, s = t / 1000, target eps - x0, s ~ logit-normal"
                f"({cfg.logit_mean}, {cfg.logit_std})",
        "latent_scaling_factor": data["scale"], "latent_shift_factor": data["shift"],
        "loss_curve": losses,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def pretrain_sd3(out_dir: str, steps: int, seed: int = 0, work_dir: str | None = None, command: str | None = None,
                 **options) -> Path:
    """Train (or resume) and write the pipeline to `out_dir`; returns it."""
    work_dir = work_dir or str(Path("runs") / f"pretrain-{Path(out_dir).name}")  # never inside the shipped folder
    cfg = SD3PretrainConfig(out_dir=str(out_dir), work_dir=str(work_dir), steps=steps, seed=seed, **options)
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    vae = tm.load_frozen_vae(cfg.vae)
    cache = encode_dataset(cfg, vae, work)
    tokenizer = tm.build_sd3_tokenizer()
    ids = _tokenize(tokenizer, cache["captions"]).to(cfg.device)  # [N, L]; both tokenizers are this one
    empty = _tokenize(tokenizer, [""]).to(cfg.device)  # [1, L]
    data = {"mean": cache["mean"].to(cfg.device), "std": cache["std"].to(cfg.device), "ids": [ids, ids],
            "empty_ids": [empty, empty], "scale": float(vae.config.scaling_factor),
            "shift": float(vae.config.shift_factor)}
    models, wall_train, losses = train(cfg, data, tokenizer, work)
    command = command or " ".join(shlex.quote(a) for a in sys.argv)
    out = export(cfg, models, vae, tokenizer, data, {"data": cache["wall"], "train": wall_train}, losses, command)
    log.info("saved %s", out)
    return out


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SD3PretrainConfig
    parser.add_argument("--out", required=True, help="pipeline folder to write")
    parser.add_argument("--work", default=None, help="checkpoint folder (default: runs/pretrain-NAME)")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (weights and optimiser stay fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile text encoders + transformer as one graph")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--n-images", type=int, default=d.n_images)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--layers", type=int, default=d.layers)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--vae", default=d.vae, help="vae/ folder of a trained pipeline (frozen, copied)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")


_OPTIONS = ("device", "batch", "bf16", "compile", "lr", "n_images", "width", "layers", "checkpoint_every",
            "log_every", "vae", "threads")


def _run(args: argparse.Namespace) -> Path:
    """Train with the parsed options; train_info.json records them as one explicit command line."""
    flags = [f"--out {shlex.quote(args.out)}", f"--steps {args.steps}", f"--seed {args.seed}"]
    flags += [f"--work {shlex.quote(args.work)}"] if args.work else []
    for name in _OPTIONS:
        value = getattr(args, name)
        if name == "vae" and Path(value) == SD15_VAE:
            continue  # the default, not a machine-specific path
        if isinstance(value, bool):
            flags += [f"--{name.replace('_', '-')}"] if value else []
        else:
            flags.append(f"--{name.replace('_', '-')} {shlex.quote(str(value))}")
    command = "python -m agsm.shapes.pretrain_sd3 " + " ".join(flags)
    return pretrain_sd3(args.out, args.steps, args.seed, work_dir=args.work, command=command,
                        **{name: getattr(args, name) for name in _OPTIONS})


def add_commands(subparsers) -> None:
    """Register `pretrain-sd3` (under `agsm shapes`); the handler takes (args, extra)."""
    parser = subparsers.add_parser("pretrain-sd3", help="train the tiny SD3-architecture base model",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)

    def handler(args, extra):
        if extra:
            raise ValueError(f"agsm shapes pretrain-sd3: unknown arguments {extra}")
        _run(args)

    parser.set_defaults(run=handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        _run(args)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"pretrain_sd3: {exc}") from None


if __name__ == "__main__":
    main()
