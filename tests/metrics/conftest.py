"""Tiny weights for every metric, written once per session in the real layouts, and a few test images."""
import numpy as np
import pytest
from PIL import Image

from agsm.metrics import METRIC_NAMES

PROMPTS = ["a red circle", "two dogs on a photo", "the cat with a blue square", "yellow",
           "one green square and a circle"]


def make_images(n=5, seed=0):
    """Smooth coloured patterns of different sizes and modes (one greyscale), so preprocessing has work to do."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        w, h = 40 + 7 * i, 64 - 5 * i
        yy, xx = np.mgrid[:h, :w]
        phase = rng.uniform(0, 6)
        rgb = np.stack([np.sin(xx / (2 + i) + phase), np.cos(yy / 3 + phase), np.sin((xx + yy) / 5)], -1)
        image = Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8))
        images.append(image.convert("L") if i == 3 else image)
    return images


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """{metric name: folder with its tiny weights}."""
    from agsm.metrics.tiny import write_tiny_weights

    root = tmp_path_factory.mktemp("metric_weights")
    return {name: write_tiny_weights(name, root / name) for name in METRIC_NAMES}


@pytest.fixture
def images():
    return make_images()


@pytest.fixture
def prompts():
    return list(PROMPTS)
