"""Training sets are written in the imagefolder layout and are reproducible from their seed."""

import json

import pytest
from PIL import Image

from agsm.shapes.dataset import write_training_set
from agsm.shapes.grammar import parse_prompt


def test_imagefolder_layout_and_seeded(tmp_path):
    out = write_training_set(tmp_path / "a", n=12, seed=4)
    lines = [json.loads(l) for l in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and len(list(out.glob("*.png"))) == 12
    for line in lines:
        assert {"file_name", "text"} <= set(line)
        img = Image.open(out / line["file_name"])
        assert img.size == (64, 64) and img.mode == "RGB"
        parse_prompt(line["text"])
    again = write_training_set(tmp_path / "b", n=12, seed=4)
    assert (again / "metadata.jsonl").read_text() == (out / "metadata.jsonl").read_text()
    assert (again / "000005.png").read_bytes() == (out / "000005.png").read_bytes()


def test_categories_option_and_errors(tmp_path):
    out = write_training_set(tmp_path, n=6, seed=0, categories=("counting",))
    assert {json.loads(l)["category"] for l in (out / "metadata.jsonl").read_text().splitlines()} == {"counting"}
    with pytest.raises(ValueError, match="categories"):
        write_training_set(tmp_path, n=2, seed=0, categories=("poses",))
    with pytest.raises(ValueError, match="n must be >= 1"):
        write_training_set(tmp_path, n=0, seed=0)
