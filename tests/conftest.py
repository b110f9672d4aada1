"""Shared fixtures: tiny pipelines of the real architectures saved to disk, and a tiny image-caption folder."""
import json
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220), "yellow": (235, 200, 20)}
SHAPES = ("square", "circle")


def write_image_folder(folder, n=16, seed=0):
    """n 32 px images of one coloured square or disc on white, captioned 'a {colour} {shape}'."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:32, :32]
    with open(folder / "metadata.jsonl", "w") as meta:
        for i in range(n):
            colour, shape = list(COLOURS)[i % 4], SHAPES[(i // 4) % 2]
            img = np.full((32, 32, 3), 255, np.uint8)
            x, y = rng.integers(8, 24, 2)
            inside = (np.abs(xx - x) <= 6) & (np.abs(yy - y) <= 6) if shape == "square" else (xx - x) ** 2 + (yy - y) ** 2 <= 36
            img[inside] = COLOURS[colour]
            Image.fromarray(img).save(folder / f"{i:03d}.png")
            meta.write(json.dumps({"file_name": f"{i:03d}.png", "text": f"a {colour} {shape}"}) + "\n")
    return folder


@pytest.fixture(scope="session")
def sd15_dir(tmp_path_factory):
    from agsm.backbones.architectures import tiny_sd15_pipeline

    path = tmp_path_factory.mktemp("models") / "sd15"
    tiny_sd15_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def sdxl_dir(tmp_path_factory):
    from agsm.backbones.architectures import tiny_sdxl_pipeline

    path = tmp_path_factory.mktemp("models") / "sdxl"
    tiny_sdxl_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def sd3_dir(tmp_path_factory):
    from agsm.backbones.architectures import tiny_sd3_pipeline

    path = tmp_path_factory.mktemp("models") / "sd3"
    tiny_sd3_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "images")
