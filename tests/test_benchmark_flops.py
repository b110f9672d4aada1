"""benchmarks/flops.py: per-phase FLOP counts of a training step, on the tiny SD1.5-architecture model."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import flops  # noqa: E402
import train_step  # noqa: E402


@pytest.fixture(scope="module")
def public_agsm_flops():
    """One counted AGSM step in the public structure (encoders every step), 2 images x 2 captions, 8x8 latents."""
    bench = train_step.Bench("tiny", "agsm", "public", images=2, latent=8, precision="fp32", device="cpu")
    return flops.count_phases(lambda meter: bench.step(0, meter))


def test_every_component_is_counted(public_agsm_flops):
    for phase in ("encoders", "target_forward", "online_forward", "backward"):
        assert public_agsm_flops[phase] > 0, phase
    # AGSM's target pass (EMA tokens, no grad) and online pass run the same UNet over the same 4 pairs.
    assert public_agsm_flops["target_forward"] == public_agsm_flops["online_forward"]


def test_backward_to_frozen_weights_costs_about_one_forward(public_agsm_flops):
    # Frozen weights: convolution and linear backwards compute only the input gradient (one matmul each, the
    # forward's size; a weight gradient would add another and make the backward ~2x the forward), the layers before
    # the first token-carrying cross-attention need no backward at all, and attention's backward is 5 matmuls
    # against the forward's 2. Measured on this model: backward = 0.97x the online forward at these 8x8 latents,
    # 1.06x at the benchmark's 16x16 (attention grows with the square of the positions). Above 1.5x would mean
    # weight gradients were taken.
    ratio = public_agsm_flops["backward"] / public_agsm_flops["online_forward"]
    assert 0.8 < ratio < 1.5, ratio


def test_cpu_attention_is_counted():
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    with torch.utils.flop_counter.FlopCounterMode(display=False, custom_mapping=flops._cpu_sdpa_mapping()) as c:
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        forward = c.get_total_flops()
        out.sum().backward()
    assert forward == 2 * (2 * 2 * 8 * 4 * 8)  # QK^T and PV: 2 matmuls of 2*8*4*8 multiply-adds each, 2 FLOPs per
    assert c.get_total_flops() > forward


def test_cpu_peak_is_a_measured_gemm():
    peak = flops.machine_peak("fp32", "cpu", gemm_size=128)
    assert peak["peak_tflops"] > 0 and peak["peak_tflops"] == peak["gemm_tflops"]
    assert "measured 128^3 fp32 GEMM" in peak["peak_source"]


def test_cuda_peak_table():
    assert flops.table_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert flops.table_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert flops.table_peak_tflops("NVIDIA H200") == 989.0
    assert flops.table_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert flops.table_peak_tflops("NVIDIA GeForce RTX 4090") is None
