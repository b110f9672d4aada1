"""Readers of image-caption data: imagefolder metadata.jsonl and COCO captions, happy paths and errors."""
import json
import logging

import pytest
from PIL import Image

from agsm.data import DataError, Record, read_coco, read_imagefolder


def _image(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)


def _folder(tmp_path, lines, images=("cat.png", "dog.png")):
    for name in images:
        _image(tmp_path / name)
    (tmp_path / "metadata.jsonl").write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return tmp_path


def test_imagefolder_reads_single_and_multiple_captions(tmp_path):
    _image(tmp_path / "sub" / "bird.png")
    root = _folder(tmp_path, [{"file_name": "cat.png", "text": " a cat "},
                              "",
                              {"file_name": "dog.png", "text": ["a dog", "a brown dog"], "extra": 1},
                              {"file_name": "sub/bird.png", "text": "a bird"},
                              {"file_name": "cat.png", "text": "a sleeping cat"}])
    assert read_imagefolder(root) == [
        Record(root / "cat.png", ("a cat", "a sleeping cat")),  # lines of the same file are merged
        Record(root / "dog.png", ("a dog", "a brown dog")),
        Record(root / "sub/bird.png", ("a bird",)),
    ]


def test_imagefolder_missing_metadata(tmp_path):
    with pytest.raises(DataError, match="no metadata.jsonl in .*file_name"):
        read_imagefolder(tmp_path)


@pytest.mark.parametrize("lines, pattern", [
    ([{"file_name": "cat.png", "text": "a cat"}, '{"file_name": "dog.png", "text": '],
     r"metadata.jsonl line 2: not valid JSON"),
    ([{"file_name": "cat.png"}], r"metadata.jsonl line 1: missing 'text'"),
    ([{"text": "a cat"}], r"metadata.jsonl line 1: missing 'file_name'"),
    (["[1, 2]"], r"metadata.jsonl line 1: expected a JSON object"),
    ([{"file_name": "cat.png", "text": 3}], r"line 1: 'text' for 'cat.png' must be a string or a list"),
    ([{"file_name": "cat.png", "text": ["a cat", "  "]}], r"line 1: empty caption for 'cat.png'"),
    ([{"file_name": "cat.png", "text": []}], r"line 1: empty caption for 'cat.png'"),
    ([{"file_name": "cat.png", "text": "a"}, {"file_name": "cow.png", "text": "a cow"}],
     r"metadata.jsonl line 2: 'cow.png' does not exist in .*; fix the file_name or add the image"),
])
def test_imagefolder_errors_name_the_line(tmp_path, lines, pattern):
    with pytest.raises(DataError, match=pattern):
        read_imagefolder(_folder(tmp_path, lines))


def test_imagefolder_empty_caption_message(tmp_path):
    lines = [{"file_name": "dog.png", "text": "a dog"}] * 6 + [{"file_name": "cat.png", "text": ""}]
    with pytest.raises(DataError) as e:
        read_imagefolder(_folder(tmp_path, lines))
    assert str(e.value).endswith("metadata.jsonl line 7: empty caption for 'cat.png'; "
                                 "give every image a non-empty 'text'")


def _coco(tmp_path, images, annotations, files=("1.jpg", "2.jpg", "3.jpg")):
    for name in files:
        _image(tmp_path / "imgs" / name)
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return tmp_path / "imgs", path


IMAGES = [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}, {"id": 3, "file_name": "3.jpg"}]


def test_coco_groups_captions_and_skips_uncaptioned(tmp_path, caplog):
    anns = [{"id": 10, "image_id": 2, "caption": "two dogs\n"}, {"id": 11, "image_id": 1, "caption": "a cat"},
            {"id": 12, "image_id": 2, "caption": "dogs playing"}]
    images_dir, path = _coco(tmp_path, IMAGES, anns)
    with caplog.at_level(logging.WARNING, logger="agsm.data"):
        records = read_coco(images_dir, path)
    assert records == [Record(images_dir / "1.jpg", ("a cat",)),
                       Record(images_dir / "2.jpg", ("two dogs", "dogs playing"))]
    assert "skipped 1 image(s) with no caption (e.g. 3.jpg)" in caplog.text


@pytest.mark.parametrize("images, anns, files, pattern", [
    (IMAGES, [{"id": 10, "image_id": 1, "caption": "a cat"}, {"id": 11, "image_id": 2, "caption": " "}],
     ("1.jpg", "2.jpg"), r"annotation 11: empty caption for image 2 \('2.jpg'\); give every image a non-empty"),
    (IMAGES, [{"id": 10, "image_id": 3, "caption": "a cat"}], ("1.jpg",),
     r"image 3 file '3.jpg' does not exist in .*imgs"),
    (IMAGES, [{"id": 10, "image_id": 7, "caption": "a cat"}], ("1.jpg",),
     r"annotation 10 refers to image_id 7, which is not in 'images'"),
    (IMAGES, [{"image_id": 1}], ("1.jpg",), r"annotations\[0\] needs an 'image_id' and a 'caption'"),
    ([{"id": 1}], [], ("1.jpg",), r"images\[0\] needs an 'id' and a 'file_name'"),
    (IMAGES, [], ("1.jpg",), r"no image has a caption"),
])
def test_coco_errors_name_the_annotation_or_image(tmp_path, images, anns, files, pattern):
    with pytest.raises(DataError, match=pattern):
        read_coco(*_coco(tmp_path, images, anns, files))


def test_coco_missing_or_malformed_json(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataError, match="captions file .*nope.json does not exist"):
        read_coco(tmp_path / "imgs", tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"images": [')
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        read_coco(tmp_path / "imgs", tmp_path / "bad.json")
    (tmp_path / "inst.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="lists 'images' and 'annotations'"):
        read_coco(tmp_path / "imgs", tmp_path / "inst.json")
