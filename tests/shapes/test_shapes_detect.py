"""The detector recovers every object of clean renders exactly, from PIL images and uint8 arrays."""

import numpy as np
import pytest

from agsm.shapes.detect import detect
from agsm.shapes.render import render
from agsm.shapes.scenes import sample_many
from agsm.shapes.spec import Scene, ShapeObject


def test_detect_clean_renders():
    for smp in sample_many(300, seed=5):
        found = detect(render(smp.scene))
        assert len(found) == len(smp.scene.objects), smp.prompt
        for obj in smp.scene.objects:
            match = min(found, key=lambda d: abs(d.center[0] - obj.center[0]) + abs(d.center[1] - obj.center[1]))
            assert (match.color, match.shape) == (obj.color, obj.shape), smp.prompt
            assert abs(match.center[0] - obj.center[0]) <= 1 and abs(match.center[1] - obj.center[1]) <= 1


def test_detect_accepts_arrays_and_refuses_bad_ones():
    img = render(Scene((ShapeObject("triangle", "green", 20, 20, 14),)))
    assert detect(np.asarray(img)) == detect(img)
    with pytest.raises(ValueError, match="HxWx3"):
        detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        detect(np.zeros((64, 64, 3), np.float32))


def test_specks_and_lines_are_not_objects():
    arr = np.full((64, 64, 3), 255, np.uint8)
    arr[5:8, 5:8] = (220, 30, 30)  # 9 px speck: below the minimum area
    arr[20:22, 0:64] = (30, 70, 220)  # a line across the canvas: not object-like
    found = detect(arr)
    assert [d.shape for d in found] == ["unknown"]
    assert detect(np.full((64, 64, 3), 255, np.uint8)) == []
