"""Finite or stop: a diverging run stops with a clear error, NaN never reaches a checkpoint or a token file."""
import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from agsm.training.checkpoint import finished_checkpoints
from agsm.cli import main
from agsm.tokens.token_file import read_tokens, save_tokens
from agsm.tokens import SoftTokens
from agsm.training.loop import train
from agsm.training.guard import NonFiniteTraining
from agsm.training.checkpoint_files import CheckpointError, state_files

INFO = {"family": "unet", "architecture": "sd15", "token_width": 8, "num_train_timesteps": 1000}


@pytest.mark.slow
def test_diverging_run_stops_naming_step_batch_and_last_good_checkpoint(tiny_args, tmp_path, capsys):
    """lr 1e6 (the issue's case): the tokens overflow within a few steps; the command exits 2 with one line.

    AdamW's decoupled weight decay multiplies the tokens by (1 - lr wd) = -99 per step, so they grow
    geometrically until something overflows; the step it happens at depends on the CPU's kernels (8 steps sufficed
    on an AMD EPYC, not on an Intel Xeon with AMX), so the run is given 30."""
    with pytest.raises(SystemExit) as exc:
        main(["train", *tiny_args("--train.lr", "1e6", "--train.steps", "30")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    line = next(l for l in err.splitlines() if l.startswith("agsm train: "))  # on a line of its own
    step = int(re.search(r"training stopped at step (\d+): non-finite", line).group(1))
    assert re.search(r"\d+\.png: a (red|green|blue|yellow) (square|circle)", line)  # the batch's files and captions
    checkpoints = finished_checkpoints(tmp_path / "run")
    assert f"the last good checkpoint, {checkpoints[-1]}" in line and checkpoints[-1].name == f"checkpoint-{step - 1}"
    assert not (tmp_path / "run" / "soft_tokens.safetensors").exists()  # nothing exported
    for folder in checkpoints:  # every checkpoint written is finite
        assert all(torch.isfinite(t).all() for t in load_file(folder / "train_state.safetensors").values())


@pytest.mark.slow
def test_bad_steps_are_skipped_counted_and_logged_up_to_the_limit(tiny_config, tmp_path, monkeypatch):
    """One poisoned step: stops without train.max_bad_steps, is skipped (no update, counted) with it."""
    from agsm.objectives import registry

    real = registry.get_method("agsm").step

    def poisoned(denoiser, batch, method, generator):
        loss, logs = real(denoiser, batch, method, generator)
        poisoned.calls += 1
        return (loss * float("nan") if poisoned.calls == 2 else loss), logs

    poisoned.calls = 0
    monkeypatch.setitem(registry._SPECS, "agsm", dataclasses.replace(registry.get_method("agsm"), step=poisoned))
    with pytest.raises(NonFiniteTraining, match="stopped at step 2: non-finite loss"):
        train(tiny_config("--train.steps", "3"))
    poisoned.calls = 0
    tokens = train(tiny_config("--train.steps", "3", "--train.max_bad_steps", "1", out=tmp_path / "skip"))
    log = [json.loads(l) for l in (tmp_path / "skip" / "train_log.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in log] == [0, 1, 1]
    tensors, meta = read_tokens(tokens)
    assert meta["step"] == "3" and all(torch.isfinite(t).all() for t in tensors.values())


def test_non_finite_tokens_are_never_written_nor_loaded(tmp_path):
    tokens = SoftTokens(4, 8)
    with torch.no_grad():
        tokens.sets[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="refusing to write .*psi_pos hold non-finite"):
        save_tokens(tmp_path / "t.safetensors", tokens, INFO, {"stages": "down"}, "agsm", {}, 1)
    assert not (tmp_path / "t.safetensors").exists()
    with pytest.raises(CheckpointError, match="refusing to checkpoint step 3: tokens.sets"):
        state_files(tokens, SoftTokens(4, 8), torch.optim.AdamW(tokens.parameters()),
                    torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 1),
                    None, 3, 0, 1)
    # A NaN token file made elsewhere (or by an older agsm) is refused on load, naming the tensor.
    good = save_tokens(tmp_path / "ok.safetensors", SoftTokens(4, 8), INFO, {"stages": "down"}, "agsm", {}, 1)
    tensors, meta = read_tokens(good)
    tensors["psi_neg"][0, 0] = float("inf")
    del meta["digest"]
    save_file(tensors, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(ValueError, match="psi_neg holds 1 non-finite value"):
        read_tokens(tmp_path / "bad.safetensors")
