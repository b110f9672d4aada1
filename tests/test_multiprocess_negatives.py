"""train.gather_captions across 4 processes on 2 machines (gloo, CPU): the negatives and the update.

One `accelerate launch` per machine (2 machines x 2 processes, both on this host, the second machine's ranks 2 and 3
with local ranks 0 and 1), then one single-process run of the same global batch. What must be equal, and why it can
be: the batch order is one permutation per epoch, rank r taking slice r of each global batch, so a single process
with images_per_step 4 x 2 takes their concatenation; the tokens start from the same seed; every image has one
caption; the second step's EMA targets (method.ema_decay 0.5) follow from the first update. t and the noise are
drawn per process from the step's generator (seed, step, rank), so the single process is handed the 4 processes'
draws in rank order (tests/multiproc_negatives.py replays them): one t per image (method.noise_sharing image), so
replayed per image they are exactly the draws of the global batch. With noise_sharing batch each process draws its
own t, and a multi-process step has one t per process, not one per step; that is why this test keeps the paper's
per-image draw. Each process's loss is a mean over its own pairs and the gradients are averaged over processes,
which is the single process's mean over all pairs, as every process holds the same number of pairs.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agsm.training.config import load_config
from agsm.training.loop import train
from multiproc_negatives import Recorder, load_ranks

MACHINES, PER_MACHINE, IMAGES_PER_STEP, STEPS = 2, 2, 2, 2
PROCESSES = MACHINES * PER_MACHINE
# float32 on CPU: the single process runs batches 4x wider through the same convolutions and sums in another order,
# so values agree to rounding: each element within RTOL of its value plus RTOL of the tensor's largest value
# (measured: 1e-7 of it).
RTOL = 1e-5
TAG_WORDS = ("one", "two", "three", "four", "cat", "dog", "photo", "white")


@pytest.fixture
def distinct_captions(image_folder, tmp_path):
    """The shared image folder with one distinct caption per image (in the tiny tokenizer's words), so every pool
    column names one image."""
    folder = tmp_path / "data"
    folder.mkdir()
    lines = (image_folder / "metadata.jsonl").read_text().splitlines()
    with open(folder / "metadata.jsonl", "w") as meta:
        for i, line in enumerate(lines):
            record = json.loads(line)
            (folder / record["file_name"]).symlink_to(image_folder / record["file_name"])
            tag = f"{TAG_WORDS[i // 4 % 4]} {TAG_WORDS[4 + i % 4]}"  # 16 distinct tags
            meta.write(json.dumps({"file_name": record["file_name"], "text": f"{record['text']} {tag}"}) + "\n")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _documented_accelerate_config(folder: Path) -> Path:
    """docs/multinode.md's accelerate config file, as the launch below takes it (its flags override the values)."""
    text = (Path(__file__).parents[1] / "docs" / "multinode.md").read_text()
    path = folder / "multinode.yaml"
    path.write_text(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    return path


def _launch_two_machines(prefix: Path, overrides: list[str]) -> None:
    port = _free_port()
    script = str(Path(__file__).with_name("multiproc_negatives.py"))
    # The documented file, with this host as machine 0 and 2 x 2 processes; on a CPU-only torch the processes
    # talk through gloo.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(_documented_accelerate_config(prefix.parent)), "--num_machines", str(MACHINES),
              "--num_processes", str(PROCESSES), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    machines = [subprocess.Popen(launch + ["--machine_rank", str(m), script, str(prefix), *overrides], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for m in range(MACHINES)]
    try:
        errors = [m.communicate(timeout=300)[1] for m in machines]
    finally:
        for m in machines:
            m.kill()
    for m, err in zip(machines, errors):
        assert m.returncode == 0, err[-3000:]


@pytest.mark.slow  # two launchers, four processes and a reference run: about 40 CPU-seconds, 30 s on 2 free cores
def test_four_processes_gather_every_caption_and_update_as_one_process(sd15_dir, distinct_captions, tmp_path,
                                                                       monkeypatch):
    common = ["--model.path", str(sd15_dir), "--data.path", str(distinct_captions), "--data.cache_dir",
              str(tmp_path / "cache"), "--train.steps", str(STEPS), "--train.gather_captions", "true",
              "--train.checkpoint_every", str(STEPS), "--method.name", "agsm", "--method.ema_decay", "0.5"]
    prefix = tmp_path / "ranks"
    _launch_two_machines(prefix, common + ["--train.output_dir", str(tmp_path / "run"),
                                           "--train.images_per_step", str(IMAGES_PER_STEP)])
    ranks, meta = load_ranks(prefix, PROCESSES)
    assert [m["local_process_index"] for m in meta] == [0, 1, 0, 1]  # really two machines of two processes

    single = Recorder(replay=ranks)
    single.install(monkeypatch.setattr)
    train(load_config(None, common + ["--train.output_dir", str(tmp_path / "single"),
                                      "--train.images_per_step", str(PROCESSES * IMAGES_PER_STEP)]))
    one = single.tensors
    global_batch = PROCESSES * IMAGES_PER_STEP

    for step in range(STEPS):
        at = f"step{step}."
        # the single process takes the concatenation of the 4 processes' images
        assert torch.equal(one[at + "ids"], torch.cat([r[at + "ids"] for r in ranks]))
        everyone = [c for m in meta for c in m["captions"][step]]
        assert len(set(everyone)) == global_batch == len(single.captions[step])
        assert single.captions[step] == everyone
        pool = one[at + "pool.embeds"]
        assert len({tuple(row.flatten().tolist()) for row in pool}) == global_batch  # distinct columns
        for rank, (mine, m) in enumerate(zip(ranks, meta)):
            # (a) every process's negatives are the global batch's captions: K = 4 x images_per_step
            assert mine[at + "caption_index"].shape == (IMAGES_PER_STEP, global_batch)
            assert torch.equal(mine[at + "pool.embeds"], pool)  # the other processes' captions, in rank order
            assert torch.equal(mine[at + "caption_index"], one[at + "caption_index"][:IMAGES_PER_STEP])
            own = torch.arange(IMAGES_PER_STEP) + rank * IMAGES_PER_STEP
            assert torch.equal(mine[at + "pos_index"], own)  # its own captions' columns
            assert m["captions"][step] == everyone[rank * IMAGES_PER_STEP:(rank + 1) * IMAGES_PER_STEP]
        # the replay gave the single process exactly the draws of the 4 processes
        assert torch.equal(one[at + "eps"], torch.cat([r[at + "eps"] for r in ranks]))
        # (b) the applied update: every process holds the all-reduced gradient and the parameters after the step,
        # and both equal the single process's on the global batch
        names = sorted(k for k in one if k.startswith(at + "grad") or k.startswith(at + "param"))
        assert names and any(one[k].abs().sum() > 0 for k in names if "grad" in k)
        for key in names:
            for rank in ranks:
                scale = float(one[key].abs().max())
                torch.testing.assert_close(rank[key], one[key], rtol=RTOL, atol=RTOL * scale, msg=key)

    written = sorted(p.name for p in (tmp_path / "run" / "checkpoints" / f"checkpoint-{STEPS}").iterdir())
    assert [f"rng-{r}.json" for r in range(PROCESSES)] == [n for n in written if n.startswith("rng-") and
                                                            n.endswith(".json")]  # every rank wrote its state
