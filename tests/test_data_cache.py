"""The encode-once cache: encoding, skipping bad images, keys, reuse, text, caption draws, atomic builds."""
import logging
import os
import zlib

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from agsm.backbones.base import TextCond
from agsm.data import DataError, EncodedDataset, Record, build_or_load_cache
from agsm.data.images import load_image

R = 16  # resolution: latents are [4, 4, 4] with the fake encoder's 4x pooling


class FakeEncoder:
    """Pools pixels to 4-channel latents and hashes words to embeddings; counts its calls."""

    def __init__(self, fail_on_image_call=None):
        self.image_calls = self.text_calls = 0
        self.fail_on_image_call = fail_on_image_call

    def encode_images(self, pixels):
        self.image_calls += 1
        if self.image_calls == self.fail_on_image_call:
            raise RuntimeError("encoder crashed")
        z = F.avg_pool2d(pixels, 4)  # [B, 3, R/4, R/4]
        return torch.cat([z, z.mean(1, keepdim=True)], dim=1)

    def encode_text(self, captions):
        self.text_calls += 1
        embeds = torch.stack([self._embed(c) for c in captions])  # [N, 4, 8]
        return TextCond(embeds=embeds, pooled=embeds.mean(1))

    @staticmethod
    def _embed(caption):
        words = (caption.split() + ["<pad>"] * 4)[:4]
        return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(zlib.crc32(w.encode())))
                            for w in words])

    def fingerprint(self):
        return "fake-encoder-1"


def _records(tmp_path, n=5, size=(24, 20)):
    records = []
    for i in range(n):
        path = tmp_path / "imgs" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", size, (40 * i, 255 - 40 * i, 90)).save(path)
        records.append(Record(path, tuple(f"caption {i} number {j}" for j in range(i % 3 + 1))))
    return records


def _build(records, root, encoder=None, **kw):
    kw.setdefault("progress", False)
    return build_or_load_cache(records, encoder or FakeEncoder(), R, root, batch_size=2, shard_size=3, **kw)


def test_build_encodes_every_image_and_caption(tmp_path):
    records, enc = _records(tmp_path), FakeEncoder()
    data = _build(records, tmp_path / "cache", enc)
    assert data.num_images == 5 and data.latent_shape == (4, 4, 4)
    assert data.captions == [c for r in records for c in r.captions]
    assert [data.caption_ids_of(i) for i in range(3)] == [[0], [1, 2], [3, 4, 5]]
    assert len(list(data.folder.glob("latents-*.safetensors"))) == 2  # 5 rows, shard_size 3
    ids = torch.tensor([4, 0, 2])
    pixels = torch.stack([load_image(records[i].path, R, R // 2) for i in ids])
    torch.testing.assert_close(data.latents(ids), FakeEncoder().encode_images(pixels))


def test_text_from_cache_equals_direct_encode(tmp_path):
    data = _build(_records(tmp_path), tmp_path / "cache")
    ids = torch.tensor([5, 0, 3, 3])
    got, want = data.text(ids), FakeEncoder().encode_text([data.captions[i] for i in ids])
    torch.testing.assert_close(got.embeds, want.embeds)
    torch.testing.assert_close(got.pooled, want.pooled)


def test_uncached_text_calls_the_encoder(tmp_path):
    enc = FakeEncoder()
    data = _build(_records(tmp_path), tmp_path / "cache", enc, cache_text=False)
    assert enc.text_calls == 0 and not list(data.folder.glob("text-*"))
    got = data.text(torch.tensor([1, 2]))
    assert enc.text_calls == 1
    torch.testing.assert_close(got.embeds, FakeEncoder().encode_text(data.captions[1:3]).embeds)


def test_second_call_reuses_the_cache(tmp_path):
    records = _records(tmp_path)
    first = _build(records, tmp_path / "cache")
    enc = FakeEncoder()
    again = _build(records, tmp_path / "cache", enc)
    assert again.folder == first.folder
    assert enc.image_calls == 0 and enc.text_calls == 0
    again.text(torch.tensor([0]))
    assert enc.text_calls == 0


def test_changed_inputs_give_a_new_key(tmp_path):
    records = _records(tmp_path)
    base = _build(records, tmp_path / "cache").folder
    changed = [Record(records[0].path, ("a different caption",))] + records[1:]
    assert _build(changed, tmp_path / "cache").folder != base
    assert build_or_load_cache(records, FakeEncoder(), 2 * R, tmp_path / "cache", progress=False).folder != base
    assert _build(records, tmp_path / "cache", dtype=torch.bfloat16).folder != base
    Image.new("RGB", (24, 20), (1, 2, 3)).save(records[1].path)
    os.utime(records[1].path, ns=(1, 1))  # a rewritten file shows a new mtime, whatever the clock's grain
    assert _build(records, tmp_path / "cache").folder != base


def test_in_memory_images_encode_like_their_files_and_key_by_their_bytes(tmp_path):
    """Records holding an encoded image (bytes) or a decoded PIL image instead of a file."""
    files = _records(tmp_path)
    as_bytes = [Record(tmp_path / f"row{i}", r.captions, r.path.read_bytes()) for i, r in enumerate(files)]
    as_pil = [Record(tmp_path / f"row{i}", r.captions, Image.open(r.path).convert("RGB")) for i, r in enumerate(files)]
    ids = torch.arange(5)
    reference = _build(files, tmp_path / "files").latents(ids)
    first, decoded = _build(as_bytes, tmp_path / "cache"), _build(as_pil, tmp_path / "c2")
    assert torch.equal(first.latents(ids), reference) and torch.equal(decoded.latents(ids), reference)
    enc = FakeEncoder()
    assert _build(as_bytes, tmp_path / "cache", enc).folder == first.folder and enc.image_calls == 0
    changed = Image.new("RGB", (24, 20), (1, 2, 3))
    as_pil[2] = Record(as_pil[2].path, as_pil[2].captions, changed)  # same name, other pixels
    assert _build(as_pil, tmp_path / "c2").folder != decoded.folder
    import io
    buffer = io.BytesIO()
    changed.save(buffer, format="PNG")
    as_bytes[2] = Record(as_bytes[2].path, as_bytes[2].captions, buffer.getvalue())
    assert _build(as_bytes, tmp_path / "cache").folder != first.folder


def test_unreadable_and_small_images_are_skipped_and_counted(tmp_path, caplog):
    records = _records(tmp_path, n=3)
    bad = tmp_path / "imgs" / "truncated.png"
    Image.effect_noise((32, 32), 50).convert("RGB").save(bad)
    bad.write_bytes(bad.read_bytes()[:400])
    text = tmp_path / "imgs" / "notes.png"
    text.write_text("not an image")
    small = tmp_path / "imgs" / "tiny.png"
    Image.new("RGB", (40, 7), "white").save(small)  # shorter side 7 < R // 2
    records[1:1] = [Record(bad, ("broken",)), Record(small, ("tiny",)), Record(text, ("text",))]
    with caplog.at_level(logging.WARNING, logger="agsm.data"):
        data = _build(records, tmp_path / "cache")
    assert data.num_images == 3 and data.skipped == {"unreadable": 2, "too_small": 1}
    assert data.image_paths == [records[0].path, records[4].path, records[5].path]
    assert data.captions[:2] == ["caption 0 number 0", "caption 1 number 0"]  # skipped captions dropped
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["skipped 3 of 6 images: 2 unreadable (truncated.png, notes.png); "
                        "1 smaller than 8 px on the shorter side (tiny.png)"]


def test_nothing_left_is_an_error(tmp_path):
    records = _records(tmp_path, n=2, size=(5, 5))
    with pytest.raises(DataError, match="none of the 2 images could be used .*2 smaller than 8 px"):
        _build(records, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_draw_captions_is_seeded_and_covers_every_caption(tmp_path):
    data = _build(_records(tmp_path), tmp_path / "cache")
    ids = torch.tensor([2] * 200 + [0, 1])
    a = data.draw_captions(ids, torch.Generator().manual_seed(7))
    b = data.draw_captions(ids, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert set(a[:200].tolist()) == set(data.caption_ids_of(2)) == {3, 4, 5}
    assert a[200] == 0 and a[201] in (1, 2)


def test_failed_build_leaves_no_finished_cache(tmp_path):
    records, root = _records(tmp_path), tmp_path / "cache"
    with pytest.raises(RuntimeError, match="encoder crashed"):
        _build(records, root, FakeEncoder(fail_on_image_call=2))
    assert not list(root.glob("*/index.json")) and not list(root.iterdir())  # temp folder removed too
    enc = FakeEncoder()
    assert _build(records, root, enc).num_images == 5 and enc.image_calls == 3  # rebuilt from scratch


def test_killed_build_leftover_is_not_taken_for_a_cache(tmp_path):
    records, root = _records(tmp_path), tmp_path / "cache"
    key = _build(records, root).folder.name
    (root / key / "index.json").unlink()  # as if a build had died before finishing
    enc = FakeEncoder()
    data = _build(records, root, enc)
    assert enc.image_calls == 3 and data.folder.name == key and (data.folder / "index.json").is_file()


def test_memory_mapped_reads_match_in_memory(tmp_path):
    folder = _build(_records(tmp_path), tmp_path / "cache").folder
    full, lazy = EncodedDataset(folder), EncodedDataset(folder, in_memory_limit=0)
    assert full._latents.in_memory and not lazy._latents.in_memory
    ids = torch.tensor([4, 1, 3, 1])
    torch.testing.assert_close(lazy.latents(ids), full.latents(ids))
    torch.testing.assert_close(lazy.text(ids).pooled, full.text(ids).pooled)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        lazy.latents(torch.tensor([5]))


def _flip_bytes(path, count=1000):
    """Damage a file in place, keeping its size: what a bad disk or a careless copy does."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(255 - b for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


def test_damaged_shard_is_named_and_the_cache_rebuilt(tmp_path, caplog):
    """1,000 flipped bytes in a latent shard used to reach training as NaN; now the hash in the index finds them."""
    from agsm.data.errors import DamagedCacheError

    records, root = _records(tmp_path), tmp_path / "cache"
    first = _build(records, root)
    expected = first.latents(torch.arange(5))
    shard = first.folder / "latents-00000.safetensors"
    _flip_bytes(shard)
    with pytest.raises(DamagedCacheError, match=r"latents-00000.safetensors: its content changed .*delete that folder"):
        EncodedDataset(first.folder)
    enc = FakeEncoder()
    with caplog.at_level(logging.WARNING, logger="agsm.data"):
        again = _build(records, root, enc)
    assert "latents-00000.safetensors" in caplog.text and "rebuilding it" in caplog.text
    assert enc.image_calls == 3 and torch.equal(again.latents(torch.arange(5)), expected)
    shard.write_bytes(shard.read_bytes()[:100])  # a truncated copy
    with pytest.raises(DamagedCacheError, match=r"latents-00000.safetensors: 100 bytes, the index says \d+"):
        EncodedDataset(first.folder)
    (first.folder / "index.json").write_text("{not json")
    with pytest.raises(DamagedCacheError, match=r"index.json cannot be read"):
        EncodedDataset(first.folder)
    assert _build(records, root).num_images == 5  # rebuilt once more


def test_abandoned_temporary_builds_are_removed_at_the_next_build(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    records, root = _records(tmp_path), tmp_path / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name, pid in ((".abc.tmp-dead", int(dead.stdout)), (".abc.tmp-live", os.getpid())):
        (root / name).mkdir(parents=True)
        (root / name / ".builder.json").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    _build(records, root)
    assert not (root / ".abc.tmp-dead").exists()  # its builder died: litter
    assert (root / ".abc.tmp-live").exists()  # its builder (this process) may still be writing


def test_captions_longer_than_the_text_encoder_reads_are_counted(tmp_path, sd15_dir, caplog):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sd15_dir / "tokenizer")
    enc = FakeEncoder()
    enc.pipe = SimpleNamespace(tokenizer=tokenizer)  # what a real backbone exposes
    records = _records(tmp_path, n=3)
    records[1] = Record(records[1].path, ("a red circle " * 800,))  # ~10,000 characters
    with caplog.at_level(logging.WARNING, logger="agsm.data"):
        data = _build(records, tmp_path / "cache", enc)
    limit = tokenizer.model_max_length
    assert f"1 of 5 captions are longer than the text encoder's limit of {limit} tokens" in caplog.text
    assert data.index["long_captions"]["count"] == 1
