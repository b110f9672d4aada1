"""Image grids with each image's verdict as a coloured frame (green correct, red wrong).

Here, in utils, and not in agsm.report: evaluations draw their grids as they finish (eval shapes' per-category
grids, edit-shapes' grid.png), and the dependency between evaluation and reporting goes one way only: agsm.report
reads what agsm.eval wrote (and may import it), agsm.eval never imports agsm.report.
"""
from __future__ import annotations

from PIL import Image, ImageDraw

GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (200, 200, 200)


def framed(image: Image.Image, correct: bool | None, scale: int = 2, frame: int = 3) -> Image.Image:
    """The image enlarged `scale` times (nearest: pixels stay pixels) inside a verdict-coloured frame."""
    big = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)
    colour = GREY if correct is None else (GREEN if correct else RED)
    out = Image.new("RGB", (big.width + 2 * frame, big.height + 2 * frame), colour)
    out.paste(big, (frame, frame))
    return out


def grid(rows: list[list[Image.Image]], labels: list[str] | None = None, label_width: int = 0,
         gap: int = 2, headers: list[str] | None = None) -> Image.Image:
    """Rows of equally sized tiles, with an optional text label left of each row and a header over each column."""
    tile_w, tile_h = rows[0][0].size
    columns = max(len(r) for r in rows)
    top = 14 if headers else 0
    sheet = Image.new("RGB", (label_width + columns * (tile_w + gap), top + len(rows) * (tile_h + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, header in enumerate(headers or []):
        draw.text((label_width + c * (tile_w + gap) + 2, 1), header[: tile_w // 6], fill="black")
    for r, row in enumerate(rows):
        y = top + r * (tile_h + gap)
        if labels:
            draw.text((4, y + tile_h // 2 - 5), labels[r][: label_width // 6], fill="black")
        for c, tile in enumerate(row):
            sheet.paste(tile, (label_width + c * (tile_w + gap), y))
    return sheet
