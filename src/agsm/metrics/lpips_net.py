"""LPIPS (Zhang et al. 2018) from local weight files, without torchvision.

The `lpips` package and torchmetrics' LPIPS both build their backbones with torchvision, and PyPI's torchvision
does not import beside this project's CPU torch, so the three backbones are rebuilt here as plain nn.Sequential
stacks whose indices match torchvision's `features`, so torchvision checkpoints load strictly.

Weights folder (--lpips DIR), for net in alex | vgg | squeeze (PIE-Bench uses squeeze):
    DIR/<net>.pth                  the LPIPS linear layers, as the lpips package ships them (lpips/weights/v0.1/)
                                   and torchmetrics too (keys lin0.model.1.weight ...)
    DIR/<backbone>*.pth            the torchvision ImageNet checkpoint: alexnet-owt-7be5be79.pth,
                                   vgg16-397923af.pth or squeezenet1_1-b8a52dc0.pth (only features.* is used)

distance(x, y): inputs [B, 3, H, W] in -1..1; each tapped feature map is unit-normalised over channels, the
squared difference weighted per channel by the linear layer, averaged over space, and summed over taps.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# LPIPS' input scaling (applied to -1..1 images)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
BACKBONE_FILES = {"alex": "alexnet*.pth", "vgg": "vgg16*.pth", "squeeze": "squeezenet1_1*.pth"}


class Fire(nn.Module):
    """SqueezeNet's fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated (torchvision's names)."""

    def __init__(self, inp: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(inp, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(self.squeeze(x))
        return torch.cat([self.act(self.expand1x1(x)), self.act(self.expand3x3(x))], 1)


def _alex():
    layers = [nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
              nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
              nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers), (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)


def _vgg16():
    layers, inp = [], 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(inp, width, 3, padding=1), nn.ReLU()]
            inp = width
    return nn.Sequential(*layers), (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)


def _squeeze11():
    layers = [nn.Conv2d(3, 64, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(64, 16, 64, 64),
              Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(128, 32, 128, 128),
              Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(256, 48, 192, 192),
              Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256)]
    return nn.Sequential(*layers), (1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512)


BACKBONES = {"alex": _alex, "vgg": _vgg16, "squeeze": _squeeze11}


class LPIPS(nn.Module):
    def __init__(self, net: str = "squeeze"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS net {net!r} is not one of {tuple(BACKBONES)}")
        self.net = net
        self.features, self.taps, widths = BACKBONES[net]()
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in widths)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _taps(self, x):
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            if i == self.taps[-1]:
                return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in -1..1 (twice) -> [B] distances."""
        fx = self._taps((x - self.shift) / self.scale)
        fy = self._taps((y - self.shift) / self.scale)
        return sum(lin((a - b) ** 2).mean((2, 3)) for lin, a, b in zip(self.lins, fx, fy))[:, 0]

    def load_weights(self, backbone: dict, linear: dict) -> "LPIPS":
        """torchvision's checkpoint (features.* keys) and LPIPS' lin<k>.model.1.weight tensors, both strictly."""
        feats = {k[len("features."):]: v for k, v in backbone.items() if k.startswith("features.")}
        self.features.load_state_dict(feats, strict=True)  # fire modules' ReLUs hold no weights: names match
        lins = {k: v for k, v in linear.items() if k.startswith("lin")}
        expected = {f"lin{i}.model.1.weight" for i in range(len(self.lins))}
        if set(lins) != expected:
            raise ValueError(f"LPIPS {self.net} linear weights: expected keys {sorted(expected)}, got {sorted(lins)}")
        for i, lin in enumerate(self.lins):
            lin.weight.copy_(lins[f"lin{i}.model.1.weight"])
        return self


def load_lpips(folder, net: str = "squeeze", device: str = "cpu") -> LPIPS:
    if net not in BACKBONES:
        raise ValueError(f"--lpips-net {net!r} is not one of {tuple(BACKBONES)}")
    folder = Path(folder)
    linear = folder / f"{net}.pth"
    found = sorted(folder.glob(BACKBONE_FILES[net])) if folder.is_dir() else []
    if not linear.is_file() or not found:
        raise FileNotFoundError(f"LPIPS weights: {folder} must hold {linear.name} (the lpips package's "
                                f"weights/v0.1/{net}.pth) and a torchvision checkpoint matching {BACKBONE_FILES[net]}")
    backbone = torch.load(found[0], map_location="cpu", weights_only=True)
    model = LPIPS(net).load_weights(backbone, torch.load(linear, map_location="cpu", weights_only=True))
    return model.to(device)
