"""data.random_flip and data.center_crop in the latent cache: at their defaults the cache is what it was before
them (same key, same bytes); random_flip stores the latents of each image mirrored, encoded from the mirrored
image; center_crop false squashes the whole image into the square instead of cutting its centre."""
import numpy as np
import pytest
import torch
from PIL import Image

from agsm.backbones.factory import load_backbone
from agsm.data import build_or_load_cache, read_imagefolder
from agsm.data.errors import DataError
from agsm.data.images import load_image


def _shard_bytes(dataset):
    return {p.name: p.read_bytes() for p in sorted(dataset.folder.glob("*.safetensors"))}


def test_defaults_leave_the_cache_bit_identical_and_flips_are_encoded(sd15_dir, image_folder, tmp_path):
    backbone = load_backbone(sd15_dir)
    records = read_imagefolder(image_folder)
    plain = build_or_load_cache(records, backbone, 32, tmp_path / "a", progress=False)
    off = build_or_load_cache(records, backbone, 32, tmp_path / "b", progress=False, center_crop=True,
                              random_flip=False)
    assert off.key == plain.key and _shard_bytes(off) == _shard_bytes(plain) and not plain.has_flipped
    assert "random_flip" not in plain.index["inputs"] and "center_crop" not in plain.index["inputs"]

    flipped = build_or_load_cache(records, backbone, 32, tmp_path / "c", progress=False, random_flip=True)
    assert flipped.key != plain.key and flipped.has_flipped
    ids = torch.arange(len(records))
    assert torch.equal(flipped.latents(ids), plain.latents(ids))  # the unflipped rows are the plain cache's
    with torch.no_grad():
        mirrored = backbone.encode_images(torch.stack([load_image(r.path, 32, 16).flip(-1) for r in records]))
    assert torch.allclose(flipped.latents(ids, torch.ones(len(ids), dtype=torch.bool)), mirrored, atol=1e-5)
    # A VAE is not flip-equivariant: mirroring the latent is not the mirrored image's latent.
    assert not torch.allclose(plain.latents(ids).flip(-1), mirrored, atol=1e-3)
    pick = torch.tensor([True, False] * (len(ids) // 2))
    mixed = flipped.latents(ids, pick)
    assert torch.equal(mixed[1::2], plain.latents(ids)[1::2]) and torch.equal(mixed[0::2], flipped.latents(
        ids[0::2], torch.ones(len(ids) // 2, dtype=torch.bool)))
    with pytest.raises(DataError, match="holds no mirrored latents; build it with random_flip=True"):
        plain.latents(ids, pick)


def test_center_crop_false_keeps_the_whole_image(tmp_path):
    wide = np.full((32, 64, 3), 255, np.uint8)
    wide[:, :8] = (255, 0, 0)  # a red band at the left edge, outside the centre square
    Image.fromarray(wide).save(tmp_path / "wide.png")
    cropped = load_image(tmp_path / "wide.png", 32, 16)
    whole = load_image(tmp_path / "wide.png", 32, 16, crop=False)
    assert cropped.shape == whole.shape == (3, 32, 32)
    red = lambda x: bool(((x[0] > 0.5) & (x[1] < -0.5)).any())  # noqa: E731
    assert not red(cropped) and red(whole)
