"""Checkpoints are named checkpoint-N (diffusers' names), ordered by N as a number, and the step-XXXXXXXX folders
of earlier runs are still found, pruned and resumed from."""
import json
import types

import pytest
import torch
from safetensors.torch import load_file

from agsm.training.checkpoint import (TrainState, checkpoint_step, finished_checkpoints, latest_checkpoint,
                             save_checkpoint)
from agsm.tokens import SoftTokens
from agsm.training.loop import train


def _folders(run, *names):
    for name in names:
        (run / "checkpoints" / name).mkdir(parents=True)


def test_checkpoints_sort_by_step_as_a_number_and_old_names_count(tmp_path):
    _folders(tmp_path, "checkpoint-999", "checkpoint-1000", "checkpoint-5", "step-00000007", "checkpoint-2000.tmp",
             "step-00003000.tmp", "notes", "checkpoint-x")
    (tmp_path / "checkpoints" / "checkpoint-4000").write_text("a file, not a checkpoint folder")
    names = [p.name for p in finished_checkpoints(tmp_path)]
    assert names == ["checkpoint-5", "step-00000007", "checkpoint-999", "checkpoint-1000"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-1000"
    assert [checkpoint_step(tmp_path / n) for n in ("checkpoint-12", "step-00000012", "checkpoint-12.tmp", "x")] == \
        [12, 12, None, None]
    _folders(tmp_path, "step-00001000")  # the same step under both names: the new name is the later one
    assert [p.name for p in finished_checkpoints(tmp_path)][-2:] == ["step-00001000", "checkpoint-1000"]


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
    _folders(tmp_path, "step-00000998")  # an earlier agsm's checkpoint is pruned like the others
    assert _save(tmp_path, 999, keep=2).name == "checkpoint-999"
    _save(tmp_path, 1000, keep=2)
    assert [p.name for p in finished_checkpoints(tmp_path)] == ["checkpoint-999", "checkpoint-1000"]
    _save(tmp_path, 1001, keep=None)  # checkpoints_total_limit null keeps every checkpoint
    assert [p.name for p in finished_checkpoints(tmp_path)] == ["checkpoint-999", "checkpoint-1000", "checkpoint-1001"]
    saved = json.loads((tmp_path / "checkpoints" / "checkpoint-1001" / "train_state.json").read_text())
    assert saved["step"] == 1001 and saved["token_file"] == {"method": "agsm"}


@pytest.mark.slow
def test_a_run_with_old_step_folders_resumes_from_them(tiny_config, tmp_path):
    """A run checkpointed by an earlier agsm (step-XXXXXXXX folders) resumes from its latest one, exactly."""
    straight = train(tiny_config("--train.steps", "3", out=tmp_path / "straight"))
    train(tiny_config())  # 2 steps, a checkpoint after each
    checkpoints = tmp_path / "run" / "checkpoints"
    for step in (1, 2):
        (checkpoints / f"checkpoint-{step}").rename(checkpoints / f"step-{step:08d}")
    resumed = train(tiny_config("--train.steps", "3"), resume=True)
    assert [p.name for p in finished_checkpoints(tmp_path / "run")] == ["step-00000002", "checkpoint-3"]
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]  # it went on from step 2, not from 0
    expected, got = load_file(straight), load_file(resumed)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
