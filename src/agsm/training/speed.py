"""Speed options of the training step (issue 17, item 3): what each does, where the trainer applies it, and why.

    step_context = prepare_denoiser(backbone.denoiser, config.train, device, weight_dtype)  # once
    with step_context():
        loss = step(...); loss.backward()       # every step, forward and backward alike

- `train.gradient_checkpointing`: the denoiser recomputes its activations in the backward pass (diffusers'
  `enable_gradient_checkpointing`): less activation memory, about one more forward per step.
- `train.channels_last`: the denoiser's 4-D (convolution) weights stored NHWC, `module.to(memory_format=...)`, as
  diffusers' optimisation guide suggests for UNets; convolutions then pick channels-last kernels. No effect on an
  MM-DiT beyond its patch embedding.
- `train.compile`: `torch.compile` of the denoiser in place (`nn.Module.compile`), so the token injector's hooks and
  attention processors are traced with it. Its first steps compile (one graph per grad mode: the EMA pass runs
  without grad): minutes on a CPU with a cold inductor cache, seconds with a warm one.
- `train.attention_precision`: the dtype of the attention calls that carry a gradient. On a CPU under bf16 torch's
  fused attention (`_scaled_dot_product_flash_attention_for_cpu`) runs its forward fast but its backward 2-6x slower
  than the same kernel in fp32 when there are few keys (measured on an Intel Xeon with AMX-BF16, torch 2.13, one
  thread: 16 x 8 heads x 64 queries x 64 keys, head size 40, backward 69 ms in bf16, 12 ms in fp32; 256 x 256: 198
  and 97 ms; 4096 queries x 81 keys, forward and backward: 95 and 57 ms). With many keys bf16 wins again (512-1024
  keys: about even to 1.4x; 4096 keys: fp32 1.4x slower). The math backend is no cure: its forward is 4-8x slower
  than the fused one, and selecting it for the whole step made the tiny model's bf16 step 1.5-2x slower. So calls
  that need a gradient and have at most FP32_MAX_KEYS keys (every cross-attention, self-attention on latents of up
  to 16 x 16) run in fp32, q, k, v upcast and the output cast back: the tiny model's bf16 step 1.5-2x faster,
  SD1.5's at 64 px unchanged (benchmarks/step_options.py). `auto` does that on a CPU under bf16, nothing elsewhere
  (GPU flash kernels have no such backward); `fp32` does it on any device; `native` never does. The EMA/target pass,
  without grad, keeps the bf16 kernel: its forward is the faster one. With gradient checkpointing the recomputation
  in the backward pass runs outside the step's torch function mode, so it gets the mode through the checkpoint's
  recompute context (diffusers >= 0.33 takes the checkpoint function; with an older one `auto` stays native).
Each option is measured on its own against the default in benchmarks/step_options.py (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import inspect
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

ATTENTION_PRECISIONS = ("auto", "native", "fp32")
FP32_MAX_KEYS = 256  # beyond this many keys the bf16 kernel is as fast or faster (module docstring)


def prepare_denoiser(denoiser: torch.nn.Module, train_config, device, weight_dtype: torch.dtype):
    """Apply train.gradient_checkpointing, channels_last and compile to the frozen denoiser, in place. Returns the
    context factory each step's forward and backward run in (train.attention_precision)."""
    upcast = upcasts_attention(train_config.attention_precision, device, weight_dtype)
    if train_config.gradient_checkpointing:
        if upcast and "gradient_checkpointing_func" not in inspect.signature(
                denoiser.enable_gradient_checkpointing).parameters:  # diffusers < 0.33
            if train_config.attention_precision == "fp32":
                raise ValueError("train.attention_precision fp32 with train.gradient_checkpointing needs diffusers "
                                 ">= 0.33; upgrade diffusers or set train.attention_precision native")
            upcast = False
        denoiser.enable_gradient_checkpointing(*([_checkpoint_with_fp32_attention] if upcast else []))
    if train_config.channels_last:
        denoiser.to(memory_format=torch.channels_last)
    if train_config.compile:
        denoiser.compile()  # lazy: the first call compiles, with whatever hooks and processors are installed by then
    return Fp32GradAttention if upcast else nullcontext


def _checkpoint_with_fp32_attention(module, *args):
    """diffusers' default checkpoint function (non-reentrant), with the recomputation under Fp32GradAttention as
    the forward was: the backward pass does not see the step's mode, and a recomputation that ran attention in
    bf16 would not match what the forward saved (torch.utils.checkpoint checks)."""
    return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False,
                                             context_fn=lambda: (nullcontext(), Fp32GradAttention()))


def upcasts_attention(setting: str, device, weight_dtype: torch.dtype) -> bool:
    """Whether train.attention_precision `setting` runs gradient-carrying attention in fp32 for this device and
    precision (see the module docstring for why `auto` does so on a CPU under bf16 only)."""
    if setting not in ATTENTION_PRECISIONS:
        raise ValueError(f"train.attention_precision {setting!r} is not one of {', '.join(ATTENTION_PRECISIONS)}")
    if setting == "auto":
        return torch.device(device).type == "cpu" and weight_dtype == torch.bfloat16
    return setting == "fp32"


def _upcast(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    return value


class Fp32GradAttention(TorchFunctionMode):
    """Runs F.scaled_dot_product_attention in fp32 when grad is enabled, its query is in a reduced precision and it
    has at most FP32_MAX_KEYS keys (a choice by shape, so a checkpoint's recomputation makes the same one).

    A torch function mode sees every call of the function, whoever makes it (diffusers' attention processors, the
    token wrappers around them), so no processor is copied. Inputs (and a float mask) are upcast outside autocast,
    which would cast them back; the output returns in the query's dtype, so the layers after it see what they saw.
    The backward pass does not see a torch function mode: a checkpoint's recomputation gets it from
    _checkpoint_with_fp32_attention.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and torch.is_grad_enabled():
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs["key"]
            if query.dtype in (torch.bfloat16, torch.float16) and key.shape[-2] <= FP32_MAX_KEYS:
                with torch.autocast(query.device.type, enabled=False):
                    out = func(*[_upcast(a) for a in args], **{k: _upcast(v) for k, v in kwargs.items()})
                return out.to(query.dtype)
        return func(*args, **kwargs)
