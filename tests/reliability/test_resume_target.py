"""`--resume`, `--resume latest` and `--resume PATH` (a run folder or one of its checkpoints), with the run
folder's safety rules: only this run's folder, only its latest checkpoint, a clear error for anything else."""
import json

import pytest

from agsm.training.checkpoint import finished_checkpoints
from agsm.cli import build_parser, main
from agsm.training.run_folder import RunFolderConflict, resume_point
from agsm.training.checkpoint_files import CheckpointError


def _run(folder, *steps):
    folder.mkdir(parents=True)
    for step in steps:
        (folder / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    (folder / "config.yaml").write_text("{}\n")
    return folder


def test_resume_names_the_latest_a_run_folder_or_a_checkpoint(tmp_path):
    run = _run(tmp_path / "run", 2, 10)
    for value in (False, True, "latest", None):
        assert resume_point(value, run) is None  # the trainer then takes the latest in train.output_dir
    assert resume_point(str(run), run) == run / "checkpoints" / "checkpoint-10"
    assert resume_point(run / "checkpoints" / "checkpoint-10", run) == run / "checkpoints" / "checkpoint-10"
    assert resume_point(_run(tmp_path / "new"), tmp_path / "new") is None  # a run with no checkpoint yet


def test_resume_path_that_is_not_a_checkpoint_is_named(tmp_path):
    run = _run(tmp_path / "run", 2)
    (tmp_path / "photos").mkdir()
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'photos'} is neither a checkpoint "
                                              r"\(<run>/checkpoints/checkpoint-N\) nor a run folder"):
        resume_point(tmp_path / "photos", run)
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'gone'} does not exist"):
        resume_point(tmp_path / "gone", run)
    torn = run / "checkpoints" / "checkpoint-4.tmp"  # an unfinished write is not a checkpoint
    torn.mkdir()
    with pytest.raises(CheckpointError, match="checkpoint-4.tmp is neither a checkpoint"):
        resume_point(torn, run)
    loose = tmp_path / "copied"
    loose.mkdir()
    (loose / "train_state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is a checkpoint outside a run folder"):
        resume_point(loose, run)


def test_resume_path_keeps_the_run_folder_rules(tmp_path):
    """Another run's checkpoint would skip the config comparison with the run that wrote it; an earlier
    checkpoint would leave later ones to be taken for this run's progress (pruning, --resume latest)."""
    run, other = _run(tmp_path / "run", 2, 4, 6), _run(tmp_path / "other", 3)
    with pytest.raises(RunFolderConflict, match=rf"belongs to the run in {other}, but train.output_dir is {run}"):
        resume_point(other / "checkpoints" / "checkpoint-3", run)
    with pytest.raises(RunFolderConflict, match=r"checkpoint-2 is not the run's latest checkpoint \(checkpoint-4, "
                                                r"checkpoint-6 came after it\)"):
        resume_point(run / "checkpoints" / "checkpoint-2", run)
    assert [p.name for p in finished_checkpoints(run)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]  # untouched


def test_bare_resume_still_means_latest_before_config_options():
    parse = build_parser().parse_known_args
    args, extra = parse(["train", "--resume", "--train.steps", "5"])
    assert args.resume == "latest" and extra == ["--train.steps", "5"]
    assert parse(["train", "--resume", "latest"])[0].resume == "latest"
    assert parse(["train", "--resume", "runs/x/checkpoints/checkpoint-5", "--train.steps=5"])[0].resume == \
        "runs/x/checkpoints/checkpoint-5"
    assert parse(["train"])[0].resume is None


def _logged_steps(run):
    return [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_a_run_folder_alone_or_a_checkpoint_through_the_command(tiny_args, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", *tiny_args()])  # 2 steps, a checkpoint after each
    main(["train", "--resume", str(run), "--train.steps", "3"])  # no --config: the run's own config.yaml
    assert _logged_steps(run) == [1, 2, 3]
    main(["train", *tiny_args("--train.steps", "4"), "--resume", str(run / "checkpoints" / "checkpoint-3")])
    assert _logged_steps(run) == [1, 2, 3, 4]
    main(["train", *tiny_args("--train.steps", "5"), "--resume", "latest"])
    assert _logged_steps(run) == [1, 2, 3, 4, 5]
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(tmp_path / "nothing-here")])
    assert exc.value.code == 2
    assert f"agsm train: {tmp_path / 'nothing-here'} does not exist" in capsys.readouterr().err
