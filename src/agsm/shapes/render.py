"""Rendering scenes to 64x64 RGB images with anti-aliased edges (4x supersampling, box-filtered down)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from .spec import BACKGROUND, CANVAS, COLORS, Scene, ShapeObject

_SUPERSAMPLE = 4


def _draw(draw: ImageDraw.ImageDraw, obj: ShapeObject, k: int) -> None:
    x0, y0, x1, y1 = (v * k for v in obj.box)
    fill = COLORS[obj.color]
    # PIL boxes include their last pixel, hence the -1 on the exclusive corner.
    if obj.shape == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
    else:  # upright triangle, base = height = box side
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x0, y1 - 1), (x1 - 1, y1 - 1)], fill=fill)


def render(scene: Scene) -> Image.Image:
    """The scene on a white 64x64 canvas."""
    big = Image.new("RGB", (CANVAS * _SUPERSAMPLE, CANVAS * _SUPERSAMPLE), BACKGROUND)
    draw = ImageDraw.Draw(big)
    for obj in scene.objects:
        _draw(draw, obj, _SUPERSAMPLE)
    return big.resize((CANVAS, CANVAS), Image.Resampling.BOX)
