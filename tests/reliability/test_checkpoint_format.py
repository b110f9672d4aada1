"""No code runs on load: checkpoints are safetensors plus JSON, restored exactly, and pickles are never opened."""
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from agsm.training import checkpoint_files
from agsm.tokens import SoftTokens
from agsm.training.loop import train
from agsm.training.checkpoint_files import CheckpointError

SRC = Path(__file__).resolve().parents[2] / "src" / "agsm"


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _objects(seed=0):
    torch.manual_seed(seed)
    tokens, ema = SoftTokens(4, 8), SoftTokens(4, 8).requires_grad_(False)
    optimizer = torch.optim.AdamW(tokens.parameters(), lr=1e-2, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=3, eta_min=1e-5)
    return tokens, ema, optimizer, schedule


def _steps(tokens, ema, optimizer, schedule, n):
    for _ in range(n):
        loss = (tokens(torch.tensor([0, 1]), torch.rand(2) * 999) ** 2).sum() * torch.rand(())
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        with torch.no_grad():
            ema.sets.lerp_(tokens.sets, 0.1)


def test_state_round_trips_bit_for_bit_without_pickle(tmp_path):
    """Tokens, EMA, AdamW moments and step, the lr schedule and every RNG continue exactly after a reload."""
    live = _objects()
    _steps(*live, 4)
    data, meta = checkpoint_files.state_files(*live, None, step=4, skipped=1, num_processes=1)
    checkpoint_files.write(tmp_path, 0, (data, meta))
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json", ".safetensors", ".safetensors"]
    expected_draws = (torch.rand(3), random.random(), np.random.rand())
    _steps(*live, 3)

    fresh = _objects(seed=1)  # other initial values, to be overwritten
    restored = checkpoint_files.restore(tmp_path, 0, 1, *fresh, None)
    assert restored["step"] == 4 and restored["skipped_steps"] == 1
    draws = (torch.rand(3), random.random(), np.random.rand())  # torch, Python and NumPy generators restored
    assert torch.equal(draws[0], expected_draws[0]) and draws[1:] == expected_draws[1:]
    _steps(*fresh, 3)
    for a, b in zip(live[0].state_dict().values(), fresh[0].state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(live[1].sets, fresh[1].sets)
    assert live[3].get_last_lr() == fresh[3].get_last_lr()
    assert isinstance(fresh[2].param_groups[0]["betas"], tuple)


@pytest.mark.slow
def test_crafted_pickle_in_a_checkpoint_never_runs_and_old_checkpoints_are_refused(tiny_config, tmp_path):
    train(tiny_config())
    last = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert {p.suffix for p in last.iterdir()} == {".json", ".safetensors"}
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        (last / name).write_bytes(pickle.dumps(Payload(marker)))
    train(tiny_config("--train.steps", "3"), resume=True)
    assert not marker.exists()  # resumed from the safetensors, the planted pickles untouched

    old = tmp_path / "run" / "checkpoints" / "checkpoint-3"
    for p in old.iterdir():
        p.unlink()
    (old / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(marker)))
    (old / "optimizer.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match=r"old-format checkpoint .*custom_checkpoint_0.pkl.*--overwrite"):
        train(tiny_config("--train.steps", "4"), resume=True)
    assert not marker.exists()


def test_no_load_path_in_the_package_unpickles():
    """No torch.load without weights_only=True, no accelerate state pickles, no pickle module, anywhere in src/."""
    offenders = []
    for path in SRC.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if (re.search(r"torch\.load\((?!.*weights_only=True)", code) or "weights_only=False" in code
                    or re.search(r"\b(load_state|save_state|register_for_checkpointing)\(", code)
                    or re.search(r"\bimport pickle\b|\bpickle\.loads?\(|allow_pickle=True", code)):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_damaged_or_foreign_checkpoint_is_named(tmp_path):
    live = _objects()
    checkpoint_files.write(tmp_path, 0, checkpoint_files.state_files(*live, None, step=1, skipped=0, num_processes=2))
    with pytest.raises(CheckpointError, match="written by 2 process.*resume with 2"):
        checkpoint_files.restore(tmp_path, 0, 1, *_objects(), None)
    (tmp_path / "train_state.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=f"checkpoint {re.escape(str(tmp_path))} is damaged.*delete that folder"):
        checkpoint_files.restore(tmp_path, 0, 2, *_objects(), None)
