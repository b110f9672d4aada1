"""Hugging Face datasets as training data: saved, parquet/csv through load_dataset, streamed; keys; errors."""
import json
import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from agsm.backbones.base import TextCond
from agsm.data import DataError, HFRecords, build_or_load_cache, read_hf_dataset, read_imagefolder
from agsm.data.hf_datasets import ROWS_PER_READ

datasets = pytest.importorskip("datasets")
R = 16  # the fake encoder's resolution: latents [4, 4, 4]


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    """load_dataset's arrow cache goes to the test's folder, not the user's ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


class PoolingEncoder:
    """Latents = 4x average-pooled pixels plus their mean; text = a hash of the caption; counts image calls."""

    def __init__(self, on_images=None):
        self.image_calls, self.on_images = 0, on_images

    def encode_images(self, pixels):
        self.image_calls += 1
        if self.on_images:
            self.on_images(len(pixels))
        z = F.avg_pool2d(pixels, 4)
        return torch.cat([z, z.mean(1, keepdim=True)], dim=1)

    def encode_text(self, captions):
        return TextCond(embeds=torch.tensor([[[float(sum(map(ord, c)) % 97)] * 8] * 2 for c in captions]))

    def fingerprint(self):
        return "pooling-1"


def _folder_rows(image_folder):
    """The image folder fixture's images (decoded, so datasets stores them as PNG bytes) and captions."""
    lines = [json.loads(line) for line in (image_folder / "metadata.jsonl").read_text().splitlines()]
    images = [Image.open(image_folder / line["file_name"]).convert("RGB") for line in lines]
    return images, [line["text"] for line in lines], [line["file_name"] for line in lines]


@pytest.fixture
def saved_dataset(image_folder, tmp_path):
    images, texts, _ = _folder_rows(image_folder)
    path = tmp_path / "saved"
    datasets.Dataset.from_dict({"image": images, "text": texts}).save_to_disk(str(path))
    return path


def _encode(records, root, encoder=None, **kw):
    return build_or_load_cache(records, encoder or PoolingEncoder(), R, root, batch_size=4, progress=False, **kw)


def _same_encoding(a, b):
    ids = torch.arange(a.num_images)
    return a.num_images == b.num_images and torch.equal(a.latents(ids), b.latents(ids)) and a.captions == b.captions


def test_saved_dataset_is_encoded_from_memory_like_the_same_imagefolder(saved_dataset, image_folder, tmp_path):
    source = read_hf_dataset(saved_dataset)
    records = list(source)
    assert len(records) == source.size == 16
    assert all(isinstance(r.image, bytes) for r in records)  # encoded PNGs held in memory, not files
    assert str(records[3].path) == f"{saved_dataset}:train[3]"
    from_hf, from_folder = _encode(source, tmp_path / "cache"), _encode(read_imagefolder(image_folder), tmp_path / "c2")
    assert _same_encoding(from_hf, from_folder)
    assert from_hf.image_paths[0].name == "saved:train[0]"


def test_training_two_steps_on_a_saved_dataset_matches_the_imagefolder_latents(sd15_dir, saved_dataset, image_folder,
                                                                              tmp_path):
    from agsm.backbones.factory import load_backbone
    from agsm.training.config import load_config
    from agsm.tokens.token_file import read_tokens
    from agsm.training.batches import load_records
    from agsm.training.loop import train

    config = load_config(None, ["--model.path", str(sd15_dir), "--data.format", "hf", "--data.path", str(saved_dataset),
                                "--train.output_dir", str(tmp_path / "run"), "--data.cache_dir",
                                str(tmp_path / "cache"), "--train.steps", "2", "--train.checkpoint_every", "100"])
    _, meta = read_tokens(train(config))
    assert meta["step"] == "2"
    backbone = load_backbone(sd15_dir)
    trained_on = build_or_load_cache(load_records(config), backbone, backbone.resolution, tmp_path / "cache",
                                     progress=False)
    assert len(list((tmp_path / "cache").glob("*/index.json"))) == 1  # the run's own cache, reused here
    folder = build_or_load_cache(read_imagefolder(image_folder), backbone, backbone.resolution, tmp_path / "c2",
                                 progress=False)
    assert _same_encoding(trained_on, folder)


def test_parquet_files_through_load_dataset(saved_dataset, tmp_path):
    parquet = tmp_path / "pq"
    parquet.mkdir()
    datasets.load_from_disk(str(saved_dataset)).to_parquet(str(parquet / "train.parquet"))
    reference = _encode(read_hf_dataset(saved_dataset), tmp_path / "ref")
    for i, source in enumerate([read_hf_dataset(parquet),  # load_dataset infers the builder from the folder
                                read_hf_dataset(parquet / "train.parquet"),  # ... from the file's suffix
                                read_hf_dataset(f"{parquet}/*.parquet", builder="parquet")]):
        assert _same_encoding(_encode(source, tmp_path / f"cache{i}"), reference)
    with pytest.raises(DataError, match=r"no split 'test'.*data.split"):
        read_hf_dataset(parquet, split="test")
    with pytest.raises(DataError, match=r"no file matches"):
        read_hf_dataset(f"{tmp_path}/nothing/*.parquet", builder="parquet")


def test_an_imagefolder_through_load_dataset_reads_the_files(image_folder, tmp_path):
    source = read_hf_dataset(image_folder)  # load_dataset infers the imagefolder builder from metadata.jsonl
    records = list(source)
    assert records[0].image is None and records[0].path == image_folder / "000.png"  # read from disk, like imagefolder
    assert _same_encoding(_encode(source, tmp_path / "cache"), _encode(read_imagefolder(image_folder), tmp_path / "c2"))


def test_csv_of_relative_image_paths_and_its_key_follows_the_files(image_folder, tmp_path):
    _, texts, names = _folder_rows(image_folder)
    table = tmp_path / "table"
    table.mkdir()
    for name in names:  # the csv names images next to it
        (table / name).write_bytes((image_folder / name).read_bytes())
    lines = ["image,text"] + [f"{n},{t}" for n, t in zip(names, texts)]
    (table / "rows.csv").write_text("\n".join(lines) + "\n")
    source = read_hf_dataset(table / "rows.csv")
    first = _encode(source, tmp_path / "cache")
    assert _same_encoding(first, _encode(read_imagefolder(image_folder), tmp_path / "c2"))
    assert first.image_paths[0] == table / names[0]
    Image.new("RGB", (32, 32), (1, 2, 3)).save(table / names[5])  # the csv is unchanged; an image it names is not
    os.utime(table / names[5], ns=(1, 1))
    again = _encode(read_hf_dataset(table / "rows.csv"), tmp_path / "cache")
    assert again.folder != first.folder
    assert not torch.equal(again.latents(torch.tensor([5])), first.latents(torch.tensor([5])))


def test_streaming_reads_once_in_order_capped_by_max_images(saved_dataset, tmp_path, monkeypatch):
    parquet = tmp_path / "pq"
    parquet.mkdir()
    datasets.load_from_disk(str(saved_dataset)).to_parquet(str(parquet / "train.parquet"))
    reference = _encode(read_hf_dataset(saved_dataset), tmp_path / "ref")
    passes = []
    original_iter = HFRecords.__iter__
    monkeypatch.setattr(HFRecords, "__iter__", lambda self: (passes.append(1), original_iter(self))[1])

    stream = read_hf_dataset(parquet, streaming=True)
    assert stream.streaming and isinstance(stream.dataset, datasets.IterableDataset)
    streamed = _encode(stream, tmp_path / "cache")
    assert len(passes) == 1  # the builder's fingerprint keys the cache: no pass to hash the images
    assert _same_encoding(streamed, reference)
    enc = PoolingEncoder()
    assert _encode(read_hf_dataset(parquet, streaming=True), tmp_path / "cache", enc).folder == streamed.folder
    assert enc.image_calls == 0 and len(passes) == 1  # an unchanged stream is not read again

    capped = _encode(read_hf_dataset(parquet, streaming=True, max_images=5), tmp_path / "cache")
    assert capped.num_images == 5 and capped.folder != streamed.folder
    assert torch.equal(capped.latents(torch.arange(5)), streamed.latents(torch.arange(5)))

    changed = datasets.load_from_disk(str(saved_dataset)).map(lambda row: {"text": row["text"] + " on white"})
    changed.to_parquet(str(parquet / "train.parquet"))
    os.utime(parquet / "train.parquet", ns=(1, 1))
    assert _encode(read_hf_dataset(parquet, streaming=True), tmp_path / "cache").folder != streamed.folder


def test_a_stream_is_never_held_in_memory_at_once(tmp_path):
    """300 generated rows, encoded 4 at a time: the rows read ahead of the encoder stay within a few reads."""
    rows_read = []

    def rows():
        for i in range(300):
            rows_read.append(i)
            yield {"image": Image.new("RGB", (R, R), (i % 256, 0, 0)), "text": f"row {i}"}

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    stream = datasets.IterableDataset.from_generator(rows, features=features)
    ahead = []
    encoded = [0]

    def on_images(n):
        ahead.append(len(rows_read) - encoded[0])
        encoded[0] += n

    source = HFRecords(stream, fingerprint="generated-300")
    data = _encode(source, tmp_path / "cache", PoolingEncoder(on_images))
    assert data.num_images == 300 and len(rows_read) == 300  # one pass
    assert max(ahead) <= 2 * ROWS_PER_READ + 2 * 4 < 300


def test_a_dataset_without_fingerprint_is_keyed_by_its_image_bytes(tmp_path):
    def stream(colour):
        def rows():
            for i in range(6):
                yield {"image": Image.new("RGB", (R, R), colour if i == 2 else (9, 9, 9)), "text": f"row {i}"}
        features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
        return HFRecords(datasets.IterableDataset.from_generator(rows, features=features))

    first = _encode(stream((200, 0, 0)), tmp_path / "cache")
    assert _encode(stream((200, 0, 0)), tmp_path / "cache").folder == first.folder
    assert _encode(stream((0, 200, 0)), tmp_path / "cache").folder != first.folder  # one pixel colour differs


def test_captions_may_be_lists_and_a_resaved_dataset_gets_a_new_key(image_folder, tmp_path):
    images, texts, _ = _folder_rows(image_folder)
    path = tmp_path / "saved"
    datasets.Dataset.from_dict({"picture": images[:4], "captions": [[t, t + " on white"] for t in texts[:4]]}
                               ).save_to_disk(str(path))
    data = _encode(read_hf_dataset(path, image_column="picture", caption_column="captions"), tmp_path / "cache")
    assert data.captions[:2] == [texts[0], texts[0] + " on white"] and data.caption_ids_of(1) == [2, 3]
    datasets.Dataset.from_dict({"picture": images[4:8], "captions": [[t] for t in texts[4:8]]}).save_to_disk(str(path))
    changed = _encode(read_hf_dataset(path, image_column="picture", caption_column="captions"), tmp_path / "cache")
    assert changed.folder != data.folder and changed.captions == texts[4:8]


def test_missing_columns_bad_rows_and_offline_hub_are_clear_errors(saved_dataset, tmp_path):
    with pytest.raises(DataError, match=r"no column 'caption'; its columns are \['image', 'text'\]: set "
                                        r"data.caption_column"):
        read_hf_dataset(saved_dataset, caption_column="caption")
    with pytest.raises(DataError, match=r"no column 'img' or 'caption'.*set data.image_column and data.caption_column"):
        read_hf_dataset(saved_dataset, image_column="img", caption_column="caption")
    bad = tmp_path / "bad"
    datasets.Dataset.from_dict({"image": [Image.new("RGB", (R, R))] * 2, "text": ["fine", " "]}).save_to_disk(str(bad))
    with pytest.raises(DataError, match=r"bad:train row 1: empty caption"):
        _encode(read_hf_dataset(bad), tmp_path / "cache")
    with pytest.raises(DataError, match=r"'someone/no-such-dataset' is not a local folder or file.*offline "
                                        r"\(HF_HUB_OFFLINE=1\)"):
        read_hf_dataset("someone/no-such-dataset")


def test_config_options_reach_the_reader(saved_dataset):
    from agsm.training.config import load_config
    from agsm.training.batches import load_records

    config = load_config(None, ["--data.format", "hf", "--data.path", str(saved_dataset), "--data.max_images", "3",
                                "--data.streaming", "true"])
    source = load_records(config)
    assert source.streaming and len(list(source)) == 3
    with pytest.raises(ValueError, match="data.streaming and data.hf_builder apply to Hugging Face datasets"):
        load_config(None, ["--data.streaming", "true"])
    with pytest.raises(ValueError, match="data.max_images 0 must be >= 1"):
        load_config(None, ["--data.max_images", "0"])
