"""--device and --dtype: what 'auto' picks on each kind of machine, and the errors for what a machine lacks."""
import os

import pytest
import torch

from agsm.utils import devices
from agsm.utils.devices import accelerate_device, resolve_device, resolve_dtype


@pytest.fixture
def machine(monkeypatch):
    """machine(cuda=0, mps=False, bf16=True): pretend this machine has that many CUDA GPUs, Apple's mps or not."""
    def pretend(cuda: int = 0, mps: bool = False, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(devices, "_mps_available", lambda: mps)
    return pretend


def test_auto_prefers_cuda_then_mps_then_cpu(machine):
    machine(cuda=2, mps=False)
    assert resolve_device("auto") == "cuda"
    machine(cuda=0, mps=True)
    assert resolve_device("auto") == "mps"
    machine(cuda=0, mps=False)
    assert resolve_device("auto") == "cpu"


def test_explicit_devices_are_checked(machine):
    machine(cuda=2)
    assert resolve_device("cuda") == "cuda" and resolve_device("CUDA:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"--device cuda:2: this machine has 2 CUDA GPU\(s\) \(available: cpu, "
                                         r"cuda:0, cuda:1\)"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="--device mps asks for Apple's Metal GPU.*use --device auto or cpu"):
        resolve_device("mps")
    machine(cuda=0)
    with pytest.raises(ValueError, match=r"--device cuda asks for a CUDA GPU.*available: cpu\); use --device auto"):
        resolve_device("cuda")
    for bad in ("gpu", "cuda:x", "cpu:0", "mps:1"):
        with pytest.raises(ValueError, match=f"--device '{bad}' is not a device name; use auto, cpu, cuda"):
            resolve_device(bad)


def test_auto_dtype_follows_the_device(machine):
    machine(cuda=1, bf16=True)
    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("auto", "cuda:0") == torch.bfloat16
    machine(cuda=1, bf16=False)
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("auto", "mps") == torch.float16
    assert resolve_dtype("auto", "cpu") == torch.float32


def test_dtype_names_and_refusals():
    for names, dtype in ((("float32", "fp32", "FP32"), torch.float32), (("bf16", "bfloat16"), torch.bfloat16),
                         (("fp16", "float16"), torch.float16)):
        assert {resolve_dtype(n, "cuda") for n in names} == {dtype}
    assert resolve_dtype(torch.bfloat16, "cpu") == torch.bfloat16  # bf16 runs on CPUs
    with pytest.raises(ValueError, match="--dtype float16 on the CPU.*use --dtype float32"):
        resolve_dtype("fp16", "cpu")
    with pytest.raises(ValueError, match="--dtype 'int8' is not a precision; use auto, float32, fp32"):
        resolve_dtype("int8", "cpu")
    with pytest.raises(ValueError, match="not a floating-point precision"):
        resolve_dtype(torch.float64, "cpu")


def test_training_device_goes_through_accelerate(machine, monkeypatch):
    """--device cpu sets accelerate's own CPU switch for the run only; a GPU index is accelerate's to pick."""
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    machine(cuda=2)
    with accelerate_device("cpu") as device:
        assert device == "cpu" and os.environ["ACCELERATE_USE_CPU"] == "true"
    assert "ACCELERATE_USE_CPU" not in os.environ
    with accelerate_device("auto") as device:
        assert device == "cuda" and "ACCELERATE_USE_CPU" not in os.environ
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=1 agsm train"):
        with accelerate_device("cuda:1"):
            pass


def test_accelerator_honours_the_cpu_switch():
    """The switch accelerate_device sets is the one Accelerator reads (Accelerator(cpu=True) in environment form)."""
    from accelerate.utils import parse_flag_from_env

    with accelerate_device("cpu"):
        assert parse_flag_from_env("ACCELERATE_USE_CPU")
