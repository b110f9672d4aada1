"""What several machines share (docs/multinode.md): one cache build per machine, and one run folder for all.

The processes of a run are played by threads here: flock conflicts between separate opens of a file in one
process as between processes, and a barrier stands in for accelerate's gather.
"""
import logging
import threading

import pytest
import torch
from PIL import Image

from agsm.backbones.base import TextCond
from agsm.data import Record, build_or_load_cache
from agsm.training.run_folder import RunFolderConflict, check_shared_run_folder
from agsm.training.run_lock import RunFolderInUse, RunLock


class CountingEncoder:
    """A constant 4-channel latent per image and a word-count embedding per caption; counts image batches and can
    hold its first batch until `release` is set."""

    def __init__(self, hold: threading.Event | None = None):
        self.image_calls, self.hold = 0, hold

    def encode_images(self, pixels):
        self.image_calls += 1
        if self.hold is not None:
            assert self.hold.wait(20), "the second builder never started waiting"
        return torch.nn.functional.avg_pool2d(pixels, 4).mean(1, keepdim=True).expand(-1, 4, -1, -1)

    def encode_text(self, captions):
        embeds = torch.tensor([[float(len(c.split()))] * 8 for c in captions]).reshape(len(captions), 1, 8)
        return TextCond(embeds=embeds, pooled=embeds.mean(1))

    def fingerprint(self):
        return "counting-encoder-1"


class _Waiting(logging.Handler):
    """Sets `event` when a cache builder logs that it waits for another."""

    def __init__(self, event: threading.Event):
        super().__init__()
        self.event = event

    def emit(self, record):
        if "waiting for another process" in record.getMessage():
            self.event.set()


def _records(folder, n=4):
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (16, 16), (60 * i, 20, 200 - 40 * i)).save(folder / f"{i}.png")
    return [Record(folder / f"{i}.png", (f"caption {i}",)) for i in range(n)]


def test_ranks_of_one_machine_build_an_unbuilt_cache_once(tmp_path):
    """Before the builder lock, every rank reaching an unbuilt cache encoded the whole dataset itself."""
    records, root = _records(tmp_path / "images"), tmp_path / "cache"
    second_waits = threading.Event()
    first, second = CountingEncoder(hold=second_waits), CountingEncoder()
    handler = _Waiting(second_waits)
    logger = logging.getLogger("agsm.data")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    results = {}

    def build(name, encoder):
        results[name] = build_or_load_cache(records, encoder, 16, root, progress=False)

    try:
        builder = threading.Thread(target=build, args=("first", first))
        builder.start()
        while first.image_calls == 0 and builder.is_alive():  # the first is encoding (and holds the lock)
            builder.join(0.01)
        build("second", second)  # waits for the first, then loads what it built
        builder.join()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert second_waits.is_set()
    assert first.image_calls == 1 and second.image_calls == 0
    assert results["first"].folder == results["second"].folder
    assert torch.equal(results["first"].latents(torch.arange(4)), results["second"].latents(torch.arange(4)))
    assert [p.name for p in root.iterdir()] == [results["first"].folder.name]  # no lock file or copy left


class _ThreadAccelerator:
    """The part of accelerate's Accelerator that check_shared_run_folder uses, for one of `size` threads."""

    def __init__(self, rank: int, size: int, shared: dict):
        self.process_index, self.num_processes, self.device, self.shared = rank, size, torch.device("cpu"), shared

    def gather(self, tensor):
        self.shared["seen"][self.process_index] = tensor
        self.shared["barrier"].wait(20)
        return torch.cat(self.shared["seen"])


def _check_on_threads(folders):
    """Run the check as len(folders) processes, process r seeing folders[r]; returns each one's error or None."""
    shared = {"seen": [None] * len(folders), "barrier": threading.Barrier(len(folders))}
    errors = [None] * len(folders)

    def check(rank):
        try:
            check_shared_run_folder(folders[rank], _ThreadAccelerator(rank, len(folders), shared))
        except RunFolderConflict as exc:
            errors[rank] = exc

    threads = [threading.Thread(target=check, args=(r,)) for r in range(len(folders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_processes_that_share_the_run_folder_pass(tmp_path):
    with RunLock(tmp_path / "run"):
        assert _check_on_threads([tmp_path / "run"] * 3) == [None] * 3


@pytest.mark.parametrize("copy", ["missing", "old run"])
def test_a_machine_with_its_own_run_folder_stops_every_process(tmp_path, copy):
    """Without a shared train.output_dir the second machine's ranks wrote their random state into a checkpoint
    folder their disk does not have, at the first checkpoint (and resumed from step 0 on --resume)."""
    own = tmp_path / "machine1" / "run"
    if copy == "old run":  # a folder of an earlier run on that machine's disk, lock released
        with RunLock(own):
            pass
    with RunLock(tmp_path / "run"):
        errors = _check_on_threads([tmp_path / "run", tmp_path / "run", own, own])
    assert all(isinstance(e, RunFolderConflict) for e in errors)  # every process stops, none waits for the others
    assert "processes 2, 3 do not see the run lock" in str(errors[0])
    assert "file system that every machine mounts" in str(errors[0])


def test_a_run_folder_without_locks_is_refused_with_the_fix_for_several_machines(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(RunFolderInUse, match="flock mount option.*a shared one for several"):
        RunLock(tmp_path / "run").acquire()
