"""Checkpoints are named checkpoint-N (diffusers' names) and ordered by N as a number."""
import json
import types

import torch

from agsm.training.checkpoint import (TrainState, checkpoint_step, finished_checkpoints, latest_checkpoint,
                                     save_checkpoint)
from agsm.tokens import SoftTokens


def _folders(run, *names):
    for name in names:
        (run / "checkpoints" / name).mkdir(parents=True)


def test_checkpoints_sort_by_step_as_a_number(tmp_path):
    _folders(tmp_path, "checkpoint-999", "checkpoint-1000", "checkpoint-5", "checkpoint-2000.tmp", "notes",
             "checkpoint-x", "step-00000007")
    (tmp_path / "checkpoints" / "checkpoint-4000").write_text("a file, not a checkpoint folder")
    names = [p.name for p in finished_checkpoints(tmp_path)]
    assert names == ["checkpoint-5", "checkpoint-999", "checkpoint-1000"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-1000"
    assert [checkpoint_step(tmp_path / n) for n in ("checkpoint-12", "checkpoint-12.tmp", "step-00000012", "x")] == \
        [12, None, None, None]


def _accelerator():
    """What save_checkpoint asks of accelerate, for one process."""
    return types.SimpleNamespace(is_main_process=True, process_index=0, num_processes=1, scaler=None,
                                 wait_for_everyone=lambda: None)


def _save(run, step, keep):
    torch.manual_seed(step)
    tokens = SoftTokens(2, 4)
    optimizer = torch.optim.AdamW(tokens.parameters())
    schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=3)
    state = TrainState()
    state.step = step
    return save_checkpoint(_accelerator(), run, state, keep, tokens, SoftTokens(2, 4), optimizer, schedule,
                           token_meta={"method": "agsm"})


def test_pruning_keeps_the_newest_by_number(tmp_path):
    """By name, checkpoint-1000 sorts before checkpoint-999 and would be the one deleted."""
    _folders(tmp_path, "checkpoint-998")
    assert _save(tmp_path, 999, keep=2).name == "checkpoint-999"
    _save(tmp_path, 1000, keep=2)
    assert [p.name for p in finished_checkpoints(tmp_path)] == ["checkpoint-999", "checkpoint-1000"]
    _save(tmp_path, 1001, keep=None)  # checkpoints_total_limit null keeps every checkpoint
    assert [p.name for p in finished_checkpoints(tmp_path)] == ["checkpoint-999", "checkpoint-1000", "checkpoint-1001"]
    saved = json.loads((tmp_path / "checkpoints" / "checkpoint-1001" / "train_state.json").read_text())
    assert saved["step"] == 1001 and saved["token_file"] == {"method": "agsm"}
