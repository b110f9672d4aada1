"""Where a model runs and in which precision: the `--device` and `--dtype` options of every `agsm` command.

    device = resolve_device("auto")           # "cuda", else "mps", else "cpu"
    dtype = resolve_dtype("auto", device)     # bf16 on a GPU that has it, else fp16 on a GPU; fp32 on the CPU

An explicit device that this machine does not have (`--device cuda` without CUDA) is an error naming the device,
the ones that are here and the fix, before any model is loaded.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
               "float16": torch.float16, "fp16": torch.float16}
DEVICE_HELP = (f"where the model runs: {DEVICE_CHOICES} (default auto: the CUDA GPU, else Apple's mps, else the CPU)")
DTYPE_HELP = ("precision of the model's weights: auto, float32/fp32, bfloat16/bf16 or float16/fp16 (default auto: "
              "bf16 on a CUDA GPU that supports it, else fp16 on a GPU; fp32 on the CPU)")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The devices this machine has, as --device accepts them: 'cpu', then 'cuda:0' ..., then 'mps'."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def resolve_device(name: str | torch.device = "auto") -> str:
    """'auto' -> 'cuda', else 'mps', else 'cpu'; an explicit device is checked to be on this machine.

    Returns the device as a string torch and diffusers accept ('cpu', 'cuda', 'cuda:1', 'mps').
    """
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"--device {name!r} is not a device name; use {DEVICE_CHOICES}")
    if kind == "cpu":
        return "cpu"
    here = ", ".join(available_devices())
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name} asks for a CUDA GPU, but this machine has none that torch can use "
                             f"(torch {torch.__version__}; available: {here}); use --device auto or cpu, or install "
                             "a CUDA build of torch on a machine with an NVIDIA GPU")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                             f"(available: {here}); pick one of them")
        return text
    if not _mps_available():
        raise ValueError(f"--device mps asks for Apple's Metal GPU, which this machine does not have "
                         f"(available: {here}); use --device auto or cpu")
    return "mps"


def resolve_dtype(name: str | torch.dtype = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype for `name` on `device` (a resolved device, see resolve_device).

    auto: bfloat16 on a CUDA GPU that supports it, float16 on older CUDA GPUs, float16 on mps (Apple GPUs run it
    natively and unified memory is shared with the system, while bfloat16 needs a recent macOS), float32 on the CPU.
    float16 on the CPU is refused: many CPU kernels lack it or run it slower than float32, so it only costs.
    """
    kind = torch.device(device).type
    if isinstance(name, torch.dtype):
        dtype = name
    elif str(name).strip().lower() == "auto":
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if kind == "mps" else torch.float32
    else:
        dtype = DTYPE_NAMES.get(str(name).strip().lower())
        if dtype is None:
            raise ValueError(f"--dtype {name!r} is not a precision; use auto, {', '.join(DTYPE_NAMES)}")
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"--dtype {dtype} is not a floating-point precision a model runs in; use auto, float32, "
                         "bfloat16 or float16")
    if dtype == torch.float16 and kind == "cpu":
        raise ValueError("--dtype float16 on the CPU: many CPU kernels lack half precision or run it slower than "
                         "float32; use --dtype float32 (or bfloat16), or run on a GPU with --device cuda")
    return dtype


def resolve_device_and_dtype(device: str = "auto", dtype: str | torch.dtype = "auto") -> tuple[str, torch.dtype]:
    """Both options at once, the device first (the dtype's 'auto' depends on it)."""
    resolved = resolve_device(device)
    return resolved, resolve_dtype(dtype, resolved)


def dtype_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16', 'float16': how a run records its precision."""
    return str(dtype).removeprefix("torch.")


def add_device_options(parser, dtype: bool = True, device_help: str = DEVICE_HELP) -> None:
    """--device and (unless dtype=False) --dtype, both defaulting to auto; `agsm train` passes TRAIN_DEVICE_HELP
    (accelerate places its processes)."""
    parser.add_argument("--device", default="auto", help=device_help)
    if dtype:
        parser.add_argument("--dtype", default="auto", help=DTYPE_HELP)


TRAIN_DEVICE_HELP = ("auto (default: accelerate picks CUDA, else mps, else the CPU; `accelerate launch` spreads "
                     "processes over GPUs), cpu (forces the CPU), cuda or mps (checked to be here). Precision is "
                     "the config's train.mixed_precision: --train.mixed_precision no|bf16|fp16")


@contextmanager
def accelerate_device(name: str = "auto"):
    """While active, training's Accelerator runs on `name`'s device; yields the resolved device.

    accelerate chooses training's device itself (and, under `accelerate launch`, one GPU per process), so 'auto'
    leaves that choice to it; 'cpu' forces the CPU through accelerate's own switch, ACCELERATE_USE_CPU (what
    `accelerate launch --cpu` and Accelerator(cpu=True) set); 'cuda' and 'mps' are checked to be on this machine.
    A GPU index is refused: which GPU a process gets is accelerate's (or CUDA_VISIBLE_DEVICES') business.
    """
    device = resolve_device(name)
    if device.startswith("cuda:"):
        index = device.partition(":")[2]
        raise ValueError(f"--device {name}: training gets its GPUs through accelerate; pick GPU {index} with "
                         f"CUDA_VISIBLE_DEVICES={index} agsm train ... (or accelerate launch --gpu_ids {index} "
                         "-m agsm.cli train ...)")
    if str(name).strip().lower() != "cpu":
        yield device
        return
    before = os.environ.get("ACCELERATE_USE_CPU")
    os.environ["ACCELERATE_USE_CPU"] = "true"
    try:
        yield device
    finally:
        if before is None:
            os.environ.pop("ACCELERATE_USE_CPU", None)
        else:
            os.environ["ACCELERATE_USE_CPU"] = before
