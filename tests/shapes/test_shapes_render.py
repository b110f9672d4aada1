"""Rendering and scene sampling keep the world's constraints (src/agsm/shapes/README.md)."""

import random

import numpy as np
import pytest

from agsm.shapes.render import render
from agsm.shapes.scenes import sample, sample_many
from agsm.shapes.spec import (
    BACKGROUND, CANVAS, CATEGORIES, COLORS, MAX_OBJECTS, MAX_SIZE, MIN_GAP, MIN_SIZE, Scene, ShapeObject, box_gap,
)


def test_sampled_scenes_keep_sizes_gaps_and_canvas():
    for smp in sample_many(600, seed=3):
        objs = smp.scene.objects
        assert 1 <= len(objs) <= MAX_OBJECTS
        for i, a in enumerate(objs):
            assert MIN_SIZE <= a.size <= MAX_SIZE
            assert 0 <= a.x and a.x + a.size <= CANVAS and 0 <= a.y and a.y + a.size <= CANVAS
            for b in objs[i + 1 :]:
                assert box_gap(a.box, b.box) >= MIN_GAP


def test_render_is_64x64_white_with_palette_fills():
    scene = Scene((ShapeObject("square", "red", 4, 4, 12), ShapeObject("circle", "blue", 30, 30, 16),
                   ShapeObject("triangle", "yellow", 10, 40, 14)))
    img = render(scene)
    arr = np.asarray(img)
    assert img.size == (CANVAS, CANVAS) and img.mode == "RGB"
    assert tuple(arr[0, 63]) == BACKGROUND and tuple(arr[63, 63]) == BACKGROUND
    for obj in scene.objects:
        cx, cy = int(obj.center[0]), int(obj.center[1] + obj.size / 4)  # below the triangle's apex
        assert tuple(arr[cy, cx]) == COLORS[obj.color]
    # nothing is drawn outside the boxes
    mask = np.ones((CANVAS, CANVAS), bool)
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        mask[y0:y1, x0:x1] = False
    assert (arr[mask] == 255).all()


def test_sampling_is_seeded_and_categories_have_their_object_counts():
    assert sample_many(30, seed=7) == sample_many(30, seed=7)
    rng = random.Random(0)
    for _ in range(20):
        assert len(sample("single_object", rng).scene.objects) == 1
        assert len(sample("colors", rng).scene.objects) == 1
        assert len(sample("position", rng).scene.objects) == 2
        pair = sample("color_attr", rng).scene.objects
        assert pair[0].shape != pair[1].shape and pair[0].color != pair[1].color
        two = sample("two_objects", rng).scene.objects
        assert (two[0].shape == two[1].shape) != (two[0].color == two[1].color)
    with pytest.raises(ValueError, match="unknown category 'poses'"):
        sample("poses", rng)


@pytest.mark.parametrize("bad, match", [
    (dict(shape="star"), "shape 'star'"),
    (dict(color="pink"), "color 'pink'"),
    (dict(size=20), "size 20"),
    (dict(x=60), "not inside"),
])
def test_invalid_objects_are_refused(bad, match):
    args = dict(shape="circle", color="red", x=0, y=0, size=12) | bad
    with pytest.raises(ValueError, match=match):
        ShapeObject(**args)


def test_overlapping_or_crowded_scenes_are_refused():
    a = ShapeObject("circle", "red", 0, 0, 12)
    with pytest.raises(ValueError, match="closer than"):
        Scene((a, ShapeObject("square", "blue", 13, 0, 12)))
    with pytest.raises(ValueError, match="1 to 4 objects"):
        Scene(tuple(ShapeObject("circle", "red", 12 * i, 0, 10) for i in range(5)))
    assert set(CATEGORIES) == {s.category for s in sample_many(6, seed=0)}
