"""The torchvision-exact CLIP transform: sizes and crop offsets as torchvision rounds them, normalisation."""
import numpy as np
import pytest
import torch
from PIL import Image

from agsm.metrics.preprocess import OPENAI_MEAN, OPENAI_STD, center_crop, clip_pixels, resize_shorter


@pytest.mark.parametrize("size, expected", [((290, 300), (224, 231)), ((300, 290), (231, 224)),
                                            ((1000, 333), (672, 224)), ((224, 500), (224, 500))])
def test_the_long_side_is_truncated_not_rounded(size, expected):
    assert resize_shorter(Image.new("RGB", size), 224).size == expected  # 300 * 224 / 290 = 231.7 -> 231


def test_odd_margins_round_half_to_even_like_torchvision():
    columns = np.tile(np.arange(299, dtype=np.uint8), (224, 1))  # pixel value = column index
    crop = center_crop(Image.fromarray(columns), 224)
    assert np.asarray(crop)[0, 0] == 38  # round(75 / 2) = 38 (a floor division would start at 37)
    rows = np.tile(np.arange(227, dtype=np.uint8)[:, None], (1, 224))
    assert np.asarray(center_crop(Image.fromarray(rows), 224))[0, 0] == 2  # round(1.5) = 2


def test_pixels_are_normalised_rgb():
    grey = Image.new("L", (50, 40), color=128)
    pixels = clip_pixels([grey, Image.new("RGB", (40, 40), (255, 0, 0))], 32)
    assert pixels.shape == (2, 3, 32, 32)
    expected = (torch.tensor([128 / 255] * 3) - torch.tensor(OPENAI_MEAN)) / torch.tensor(OPENAI_STD)
    torch.testing.assert_close(pixels[0, :, 5, 5], expected)
    torch.testing.assert_close(pixels[1, :, 0, 0], (torch.tensor([1.0, 0, 0]) - torch.tensor(OPENAI_MEAN))
                               / torch.tensor(OPENAI_STD))
