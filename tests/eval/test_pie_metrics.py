"""PIE-Bench's metric pieces against direct computations: RLE masks, SSIM, PSNR, LPIPS, structure distance."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agsm.metrics.lpips_net import LPIPS, load_lpips
from agsm.eval.pie_data import decode_mask, strip_marks
from agsm.metrics.pixel_metrics import psnr, ssim
from agsm.metrics.structure_distance import StructureDistance, load_structure_distance

from eval_helpers import encode_rle, save_tiny_dino, save_tiny_lpips


def test_decode_mask_runs_and_border():
    inner = np.zeros((6, 7), bool)
    inner[2:4, 1:5] = True
    inner[5, 6] = True
    mask = decode_mask(encode_rle(inner), 6, 7)
    expected = inner.astype(np.float32)
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = 1
    np.testing.assert_array_equal(mask, expected)
    # flat 8..11 of a 5x5 image wraps from row 1 (cols 3, 4) to row 2 (cols 0, 1): row-major
    assert decode_mask([8, 4], 5, 5)[1:4, 1:4].tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="pairs"):
        decode_mask([1, 2, 3], 4, 4)
    assert strip_marks("a [blue] [big] car") == "a blue big car"


def _ssim_reference(a, b, size=11, sigma=1.5, c1=1e-4, c2=9e-4):
    """Loop over every window that fits, per channel: the textbook formula with a Gaussian-weighted window."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for c in range(a.shape[0]):
        for i in range(a.shape[1] - size + 1):
            for j in range(a.shape[2] - size + 1):
                pa, pb = a[c, i:i + size, j:j + size], b[c, i:i + size, j:j + size]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_and_psnr_match_direct_formulas():
    """SSIM is torchmetrics' (PIE-Bench's): within a few 1e-3 of the textbook formula, not equal to it."""
    rng = np.random.default_rng(0)
    a = rng.random((3, 16, 18))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ta, tb = torch.tensor(a), torch.tensor(b)
    # 2e-3 apart here: on a 16x18 image the border handling weighs more than on real ones (3e-4 at 64x64)
    assert ssim(ta, tb) == pytest.approx(_ssim_reference(a, b), abs=5e-3)
    assert ssim(ta, tb) < ssim(ta, (ta + tb) / 2) < 1.0
    assert ssim(ta, ta) == pytest.approx(1.0)
    assert psnr(ta, tb) == pytest.approx(10 * math.log10(1 / np.mean((a - b) ** 2)))
    assert psnr(ta, ta) == math.inf
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(ta[:, :8], tb[:, :8])


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_loads_real_layouts_and_follows_the_formula(tmp_path, net):
    model = load_lpips(save_tiny_lpips(tmp_path / "lpips", net), net)
    x, y = torch.rand(2, 3, 40, 40) * 2 - 1, torch.rand(2, 3, 40, 40) * 2 - 1
    assert torch.equal(model(x, x), torch.zeros(2))
    # only the first tap weighted: mean over space of sum_c w_c (normalised relu1 features difference)^2
    for i, lin in enumerate(model.lins):
        lin.weight.data = torch.ones_like(lin.weight) if i == 0 else torch.zeros_like(lin.weight)
    conv = model.features[0]
    shift, scale = torch.tensor([-0.030, -0.088, -0.188]), torch.tensor([0.458, 0.448, 0.450])

    def tap(z):
        z = (z - shift.view(1, 3, 1, 1)) / scale.view(1, 3, 1, 1)
        f = F.relu(F.conv2d(z, conv.weight, conv.bias, conv.stride, conv.padding))
        return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    direct = (tap(x) - tap(y)).pow(2).sum(1).mean((1, 2))
    torch.testing.assert_close(model(x, y), direct)


def test_lpips_weight_errors_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"squeeze.pth .*squeezenet1_1\*.pth"):
        load_lpips(tmp_path, "squeeze")
    folder = save_tiny_lpips(tmp_path / "bad", "alex")
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, folder / "alex.pth")
    with pytest.raises(ValueError, match="lin4.model.1.weight"):
        load_lpips(folder, "alex")
    backbone = torch.load(folder / "alexnet-tiny.pth")
    backbone.pop("features.0.bias")
    torch.save(backbone, folder / "alexnet-tiny.pth")
    with pytest.raises(RuntimeError, match="0.bias"):
        LPIPS("alex").load_weights(backbone, {})


def test_structure_distance_matches_keys_computed_directly(tmp_path):
    metric = load_structure_distance(save_tiny_dino(tmp_path / "dino"))
    model = metric.model
    a, b = torch.rand(3, 32, 48), torch.rand(3, 32, 48)
    assert metric(a, a) == 0.0

    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])

    def self_sim(image):
        x = F.interpolate(image[None], size=(224, 336), mode="bilinear", align_corners=False, antialias=True)
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        hidden = model(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states
        last = model.layers[-1] if hasattr(model, "layers") else model.encoder.layer[-1]
        keys = last.attention.k_proj(last.layernorm_before(hidden[-2]))[0]
        keys = keys / keys.norm(dim=-1, keepdim=True)
        return keys @ keys.T

    with torch.no_grad():
        direct = float(((self_sim(a) - self_sim(b)) ** 2).mean())
    assert metric(a, b) == pytest.approx(direct, rel=1e-5)
    assert metric.self_similarity(a).shape == (1 + 14 * 21, 1 + 14 * 21)
    with pytest.raises(ValueError, match="outside the model's 2 layers"):
        StructureDistance(model, layer=2)
    with pytest.raises(FileNotFoundError, match="dino-vitb8"):
        load_structure_distance(tmp_path)
