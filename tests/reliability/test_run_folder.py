"""One owner per run folder: a live writer locks it, a dead one's lock is taken over, runs are never mixed."""
import logging
import subprocess
import sys
import time

import pytest

from agsm.training.config import load_config
from agsm.training.run_folder import RunFolderConflict, claim_run_folder
from agsm.training.run_lock import RunFolderInUse, RunLock
from agsm.training.loop import train

HOLD_LOCK = "import sys, time; from agsm.training.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path, caplog):
    """A real process holds the folder: another run is refused at once, naming it; after kill -9 the lock is free."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        with pytest.raises(RunFolderInUse, match=rf"{tmp_path} is in use by process {holder.pid} on .*another"):
            claim_run_folder(tmp_path, load_config(), resume=False, overwrite=False)
        assert time.perf_counter() - started < 5  # refused at once, not after loading anything
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="agsm.train"):
        lock = claim_run_folder(tmp_path, load_config(), resume=False, overwrite=False)
    assert f"taking over the lock of process {holder.pid}" in caplog.text
    with pytest.raises(RunFolderInUse):  # this process now holds it; a second holder (even here) is refused
        RunLock(tmp_path).acquire()
    lock.release()
    RunLock(tmp_path).acquire().release()  # a clean release leaves a free lock and no warning-worthy owner


def _fake_run(folder, config):
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    config.save(folder / "config.yaml")


def test_a_folder_holding_a_run_needs_resume_or_overwrite(tmp_path):
    old = load_config(None, ["--train.seed", "1"])
    _fake_run(tmp_path, old)
    (tmp_path / "soft_tokens.safetensors").write_bytes(b"x")
    new = load_config(None, ["--train.seed", "2"])
    with pytest.raises(RunFolderConflict, match=r"already holds a run \(checkpoints up to checkpoint-2\); "
                                                r"continue it with --resume, start it over with --overwrite"):
        claim_run_folder(tmp_path, new, resume=False, overwrite=False)
    with pytest.raises(ValueError, match="give one of them"):
        claim_run_folder(tmp_path, new, resume=True, overwrite=True)
    claim_run_folder(tmp_path, new, resume=False, overwrite=True).release()
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "soft_tokens.safetensors").exists()
    assert load_config(tmp_path / "config.yaml").train.seed == 2


def test_resume_refuses_result_changing_differences_and_allows_harmless_ones(tmp_path):
    _fake_run(tmp_path, load_config(None, ["--train.seed", "1", "--train.steps", "10"]))
    changed = load_config(None, ["--train.seed", "2", "--train.lr", "0.01", "--method.name", "softrepa",
                                 "--train.steps", "10"])
    with pytest.raises(RunFolderConflict) as exc:
        claim_run_folder(tmp_path, changed, resume=True, overwrite=False)
    message = str(exc.value)
    for diff in ("train.seed: 1 in the run, 2 now", "train.lr: 0.001 in the run, 0.01 now",
                 "method.name: 'agsm' in the run, 'softrepa' now"):
        assert diff in message
    assert "train.steps" not in message and load_config(tmp_path / "config.yaml").train.seed == 1  # not rewritten
    harmless = load_config(None, ["--train.seed", "1", "--train.steps", "50", "--train.log_every", "3",
                                  "--train.checkpoint_every", "7", "--train.max_bad_steps", "2",
                                  "--train.checkpoints_total_limit", "5", "--train.export_tokens", "ema"])
    claim_run_folder(tmp_path, harmless, resume=True, overwrite=False).release()
    assert load_config(tmp_path / "config.yaml").train.steps == 50


def test_resume_reads_an_earlier_runs_config_with_the_old_option_name(tmp_path):
    """Runs written before train.checkpoints_total_limit hold train.keep_checkpoints in their config.yaml."""
    _fake_run(tmp_path, load_config(None, ["--train.seed", "1"]))
    saved = (tmp_path / "config.yaml").read_text()
    assert "  checkpoints_total_limit: 2\n" in saved
    (tmp_path / "config.yaml").write_text(saved.replace("  checkpoints_total_limit: 2\n", "  keep_checkpoints: 2\n"))
    claim_run_folder(tmp_path, load_config(None, ["--train.seed", "1"]), resume=True, overwrite=False).release()
    with pytest.raises(RunFolderConflict, match="train.seed: 1 in the run, 2 now"):  # still compared, option by option
        claim_run_folder(tmp_path, load_config(None, ["--train.seed", "2"]), resume=True, overwrite=False)


@pytest.mark.slow
def test_train_refuses_to_start_over_a_finished_run(tiny_config, tmp_path):
    """The issue's case: a new run into a finished folder used to prune the old checkpoints and mix the runs."""
    first = train(tiny_config())
    before = first.read_bytes()
    with pytest.raises(RunFolderConflict, match="already holds a run"):
        train(tiny_config("--train.seed", "5"))
    assert first.read_bytes() == before
    train(tiny_config("--train.seed", "5"), overwrite=True)
    assert first.read_bytes() != before


def test_a_cache_folder_is_not_a_run_and_survives_overwrite(tmp_path):
    """The default data cache lives in the run folder (<run>/cache): it neither makes a folder 'hold a run' nor
    upsets the resume check, and --overwrite keeps it (its entries are keyed by everything they encode)."""
    entry = tmp_path / "cache" / "0123456789abcdef"
    entry.mkdir(parents=True)
    (entry / "index.json").write_text("{}")
    claim_run_folder(tmp_path, load_config(None, ["--train.seed", "1"]), resume=False, overwrite=False).release()
    claim_run_folder(tmp_path, load_config(None, ["--train.seed", "1"]), resume=True, overwrite=False).release()
    _fake_run(tmp_path, load_config(None, ["--train.seed", "1"]))
    with pytest.raises(RunFolderConflict, match=r"already holds a run \(checkpoints up to checkpoint-2\)"):
        claim_run_folder(tmp_path, load_config(), resume=False, overwrite=False)
    claim_run_folder(tmp_path, load_config(), resume=False, overwrite=True).release()
    assert not (tmp_path / "checkpoints").exists() and (entry / "index.json").is_file()


@pytest.mark.slow
def test_the_default_cache_is_inside_the_run_folder_and_reused_after_overwrite(sd15_dir, image_folder, tmp_path,
                                                                                caplog):
    args = ["--model.path", str(sd15_dir), "--data.path", str(image_folder), "--train.output_dir",
            str(tmp_path / "run"), "--train.steps", "1", "--method.ema_decay", "0.9"]
    train(load_config(None, args))
    entries = list((tmp_path / "run" / "cache").glob("*/index.json"))
    assert len(entries) == 1 and not (tmp_path / "cache").exists()  # no longer beside the run folder
    with caplog.at_level(logging.INFO, logger="agsm.data"):
        train(load_config(None, args + ["--train.seed", "3"]), overwrite=True)
    assert f"using the cached encoding in {entries[0].parent}" in caplog.text  # kept, and not encoded again
