"""Image preprocessing: shorter side to the resolution, centre crop, RGB in [-1, 1]."""
import torch
from PIL import Image

from agsm.data.images import TOO_SMALL, UNREADABLE, load_image


def test_wide_image_is_resized_and_centre_cropped(tmp_path):
    img = Image.new("RGB", (60, 20), (255, 0, 0))  # red | white | blue thirds
    img.paste((255, 255, 255), (20, 0, 40, 20))
    img.paste((0, 0, 255), (40, 0, 60, 20))
    img.save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 10, 5)
    assert x.shape == (3, 10, 10) and x.dtype == torch.float32
    assert torch.allclose(x[:, 3:7, 3:7], torch.ones(3, 4, 4), atol=0.02)  # only the white centre is kept


def test_grey_and_transparent_images_become_rgb(tmp_path):
    Image.new("L", (12, 16), 0).save(tmp_path / "grey.png")
    Image.new("RGBA", (16, 12), (255, 255, 255, 128)).save(tmp_path / "rgba.png")
    assert torch.equal(load_image(tmp_path / "grey.png", 8, 4), -torch.ones(3, 8, 8))
    assert torch.equal(load_image(tmp_path / "rgba.png", 8, 4), torch.ones(3, 8, 8))


def test_skip_reasons(tmp_path):
    Image.new("RGB", (30, 5)).save(tmp_path / "thin.png")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert load_image(tmp_path / "thin.png", 16, 8) == TOO_SMALL
    assert load_image(tmp_path / "junk.jpg", 16, 8) == UNREADABLE
    assert load_image(tmp_path / "missing.png", 16, 8) == UNREADABLE
