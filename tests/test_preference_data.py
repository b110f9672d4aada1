"""Preference pairs: the Pick-a-Pic layout (labels, ties), a winner/loser parquet through Hugging Face datasets, the
shared encode-once cache, and `agsm shapes pairs` on the shipped ShapesWorld model."""
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from preference_helpers import write_pairs_folder

from agsm.backbones.factory import load_backbone
from agsm.data import build_or_load_cache, read_imagefolder
from agsm.data.errors import DataError
from agsm.preference.pair_data import PairColumns, build_or_load_pairs, match_pairs, preferred_first, read_pairs

import agsm.shapes
from agsm.shapes.grammar import parse_prompt
from agsm.shapes.suite import held_out_keys, requirement_key

SD15_MODEL = Path(agsm.shapes.__file__).parent / "models" / "sd15-tiny"


@pytest.fixture(scope="module")
def backbone(sd15_dir):
    return load_backbone(sd15_dir)


def _single_latents(backbone, image_folder, tmp_path):
    """Each fixture image's latent by file name, from the ordinary image cache."""
    data = build_or_load_cache(read_imagefolder(image_folder), backbone, 32, tmp_path / "single", progress=False)
    return {p.name: data.latents(torch.tensor([i]))[0] for i, p in enumerate(data.image_paths)}


def test_pick_a_pic_labels_choose_the_winner_and_ties_drop(backbone, image_folder, tmp_path):
    folder = write_pairs_folder(tmp_path / "pairs", image_folder, n=8)
    pairs = build_or_load_pairs(read_pairs(folder), backbone, 32, tmp_path / "cache", progress=False)
    assert pairs.num_pairs == 7  # the eighth row is a tie (label_0 0.5)
    single = _single_latents(backbone, image_folder, tmp_path)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    x_w, x_l = pairs.latents(torch.arange(7))
    for i, row in enumerate(rows[:7]):
        first, second = row["jpg_0"].split("/")[-1], row["jpg_1"].split("/")[-1]
        winner, loser = (first, second) if row["label_0"] == 1 else (second, first)
        torch.testing.assert_close(x_w[i], single[winner])
        torch.testing.assert_close(x_l[i], single[loser])
        assert pairs.captions(torch.tensor([i])) == [row["caption"]]
    again = build_or_load_pairs(read_pairs(folder), backbone, 32, tmp_path / "cache", progress=False)
    assert again.encoded.folder == pairs.encoded.folder  # encoded once, then read back


def test_a_pair_with_an_unreadable_image_is_dropped(backbone, image_folder, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(image_folder, images)
    (images / "003.png").write_bytes(b"not a png")
    folder = write_pairs_folder(tmp_path / "pairs", images, n=4)
    pairs = build_or_load_pairs(read_pairs(folder), backbone, 32, tmp_path / "cache", progress=False)
    assert pairs.num_pairs == 2  # pair 1 lost image 003, pair 3 is a tie


def test_winner_loser_parquet_with_configurable_columns(backbone, image_folder, tmp_path):
    import datasets

    def png(name):
        buffer = io.BytesIO()
        Image.open(image_folder / name).save(buffer, format="PNG")
        return buffer.getvalue()

    rows = {"prompt": ["a red square", "a blue circle"], "image_w": [png("000.png"), png("005.png")],
            "image_l": [png("001.png"), png("006.png")]}
    features = datasets.Features({"prompt": datasets.Value("string"), "image_w": datasets.Image(),
                                  "image_l": datasets.Image()})
    datasets.Dataset.from_dict({**rows, "image_w": [{"bytes": b, "path": None} for b in rows["image_w"]],
                                "image_l": [{"bytes": b, "path": None} for b in rows["image_l"]]},
                               features=features).to_parquet(str(tmp_path / "pairs.parquet"))
    columns = PairColumns(caption="prompt", image_0="image_w", image_1="image_l", label="")
    pairs = build_or_load_pairs(read_pairs(tmp_path / "pairs.parquet", columns), backbone, 32, tmp_path / "cache",
                                progress=False)
    single = _single_latents(backbone, image_folder, tmp_path)
    x_w, x_l = pairs.latents(torch.arange(2))
    torch.testing.assert_close(x_w[1], single["005.png"])
    torch.testing.assert_close(x_l[1], single["006.png"])
    with pytest.raises(DataError, match="no column 'label_0'.*set data.label_column"):
        read_pairs(tmp_path / "pairs.parquet", PairColumns(caption="prompt", image_0="image_w", image_1="image_l"))


def test_labels_and_matching():
    assert preferred_first(1, "x") is True and preferred_first(0.0, "x") is False and preferred_first(0.5, "x") is None
    with pytest.raises(DataError, match="must be 1 .*0 .*or 0.5"):
        preferred_first(0.7, "row 3: label_0")
    # records w0 l0 w1 l1 w2 l2, the cache kept all but l1: pair 1 goes
    assert match_pairs(["a", "b", "c", "d", "e", "f"], ["a", "b", "c", "e", "f"]) == ([0, 3], [1, 4])


def test_shapes_pairs_command_writes_judged_pairs_the_reader_takes(tmp_path, backbone):
    from agsm.cli import main
    from agsm.shapes.verify import verify

    model = str(SD15_MODEL)
    out = tmp_path / "pairs"
    main(["shapes", "pairs", "--model", model, "--prompts", "12", "--candidates", "4", "--steps", "10", "--out",
          str(out), "--device", "cpu"])
    summary = json.loads((out / "pairs.json").read_text())
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert summary["pairs"] == len(rows) >= 1
    assert summary["pairs"] + summary["ties"]["all_correct"] + summary["ties"]["all_wrong"] == 12
    held_out = held_out_keys()  # the suite's compositions that training never sees
    for row in rows:
        winner, loser = (row["jpg_0"], row["jpg_1"]) if row["label_0"] == 1 else (row["jpg_1"], row["jpg_0"])
        assert verify(Image.open(out / winner), row["caption"]).correct
        assert not verify(Image.open(out / loser), row["caption"]).correct
        assert requirement_key(parse_prompt(row["caption"])) not in held_out  # the training grammar only
    shapes_backbone = load_backbone(model)
    pairs = build_or_load_pairs(read_pairs(out), shapes_backbone, 64, tmp_path / "cache", progress=False)
    assert pairs.num_pairs == len(rows)
