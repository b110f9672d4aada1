"""Injection between the source and target rows of one batched UNet call, for PnP and MasaCtrl.

The editors batch the source branch and the target branch into one denoiser call (conditioning.guided_predictions,
rows ordered branch-major: [source uncond, target uncond, source cond, target cond] with guidance, else
[source, target]). Injecting the source's features into the target is then a row copy inside the UNet: a forward
hook on a module replaces the target rows of its output with source rows. The hooks sit on the self-attention
projections (`attn1.to_q / to_k / to_v`) and on a residual block's `conv2`, so the attention processors run
unchanged, whichever they are (stock, or the soft-token wrappers that `load_soft_tokens` installs on `attn2`), and no
diffusers forward is copied. `hooked(...)` removes every hook on exit, also after an exception.

Layer indices are given on SD1.5's layout, as the papers state them, and scaled to other UNets by the ratio of
layer counts (`scale_layer`): round(index * count / sd15_count). MasaCtrl's own code does the same for SDXL (10 of
16 layers -> 44 of 70).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import nn

SD15_SELF_ATTENTION_LAYERS = 16  # transformer blocks: 6 down, 1 mid, 9 up
SD15_DECODER_SELF_ATTENTION = 9
SD15_DECODER_RESNETS = 12        # up_blocks 0..3, three resnets each


def _blocks_in_order(unet) -> list[tuple[str, nn.Module]]:
    """(prefix, block) in forward order: down blocks, mid block, up blocks (module registration order differs)."""
    blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    if unet.mid_block is not None:
        blocks.append(("mid_block", unet.mid_block))
    return blocks + [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]


def self_attention_layers(unet, decoder_only: bool = False) -> list[tuple[str, nn.Module]]:
    """(name, attn1) of every transformer block in forward order, the order MasaCtrl and PnP count layers in."""
    layers = []
    for prefix, block in _blocks_in_order(unet):
        if decoder_only and not prefix.startswith("up_blocks"):
            continue
        for name, module in block.named_modules():
            if name.endswith("attn1") and hasattr(module, "to_q"):
                layers.append((f"{prefix}.{name}", module))
    return layers


def decoder_resnets(unet) -> list[tuple[str, nn.Module]]:
    """(name, resnet) of the decoder's residual blocks in forward order (SD1.5: 12)."""
    return [(f"up_blocks.{i}.resnets.{j}", r) for i, b in enumerate(unet.up_blocks) for j, r in enumerate(b.resnets)]


def scale_layer(index: int, reference_count: int, count: int) -> int:
    """A layer index given on SD1.5's `reference_count` layers, mapped onto a UNet with `count` of them."""
    return min(count, max(0, round(index * count / reference_count)))


def branch_rows(guided: bool) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(source rows, target rows, batch size) of guided_predictions([source request, target request]).

    Mirrors its branch-major layout: with guidance [src uncond, tgt uncond, src cond, tgt cond], else [src, tgt].
    """
    return ((0, 2), (1, 3), 4) if guided else ((0,), (1,), 2)


class RowCopy:
    """A forward hook that, while `active`, replaces rows of a module's output: out[target] = out[source]."""

    def __init__(self) -> None:
        self.active = False
        self.pairs: tuple[tuple[int, int], ...] = ()
        self.batch = 0

    def set(self, active: bool, pairs: Iterable[tuple[int, int]], batch: int) -> None:
        self.active, self.pairs, self.batch = active, tuple(pairs), batch

    def __call__(self, module, args, output):
        if not self.active:
            return None
        if output.shape[0] != self.batch:
            raise RuntimeError(f"injection expected a batch of {self.batch} rows (source and target branches) but "
                               f"{type(module).__name__} got {output.shape[0]}; only the editor may call the UNet "
                               "while its hooks are installed")
        out = output.clone()
        for target, source in self.pairs:
            out[target] = output[source]
        return out


def check_unfused(attentions: Iterable[nn.Module]) -> None:
    """Fused q/k/v projections bypass to_q/to_k/to_v, so their hooks would never run."""
    for attn in attentions:
        if getattr(attn, "fused_projections", False) or "Fused" in type(attn.processor).__name__:
            raise ValueError("the UNet's attention uses fused q/k/v projections, which injection hooks cannot see; "
                             "call pipe.unfuse_qkv_projections() before editing")


@contextlib.contextmanager
def hooked(hooks: Iterable[tuple[nn.Module, RowCopy]]):
    """Register each (module, RowCopy) as a forward hook for the block; all are removed on exit."""
    handles = []
    try:
        for module, copy in hooks:
            handles.append(module.register_forward_hook(copy))
        yield
    finally:
        for handle in handles:
            handle.remove()


def same_schedule(inverse_timesteps: torch.Tensor, forward_timesteps: torch.Tensor) -> None:
    """The source trajectory is indexed by step: inversion must visit the sampler's timesteps in reverse."""
    if not torch.equal(inverse_timesteps.flip(0).cpu(), forward_timesteps.cpu()):
        raise ValueError("the DDIM inverse scheduler's timesteps are not the sampler's reversed (timestep_spacing "
                         f"{inverse_timesteps[:3].tolist()}... vs {forward_timesteps[-3:].tolist()}); use 'leading' "
                         "or 'trailing' spacing in the model's scheduler config")
