"""Token-file errors that point to the fix (issue 27 item 4): a checkpoint or a run folder without its token file passed
as tokens names what it is and the exact `agsm export` command; a safetensors file that is not a token file is one line
naming the file and a shortened tensor list."""
import re
import shlex

import pytest
import torch
from safetensors.torch import save_file

from agsm.cli import main
from agsm.tokens import token_file
from agsm.tokens.token_file import FILE_NAME, locate_token_file, read_tokens, resolve_token_path
from token_file_helpers import fresh_pipeline

EXPORT = re.compile(r"`(agsm export [^`]*)`, then pass (.+)$")


def fake_run(root, steps=(), config=True):
    """A run folder as `agsm train` leaves it before it finishes: config.yaml and checkpoints/checkpoint-N."""
    root.mkdir(parents=True)
    if config:
        (root / "config.yaml").write_text("train: {}\n")
    for step in steps:
        folder = root / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "train_state.json").write_text("{}")
    return root


def _refused(source, kind=FileNotFoundError) -> str:
    with pytest.raises(kind) as exc:
        read_tokens(locate_token_file(source))
    return str(exc.value)


def test_the_marks_of_a_run_agree_with_training():
    """tokens/ may not import training/, so token_file restates these names: they must stay the same."""
    from agsm.training import checkpoint, checkpoint_files, run_folder

    assert token_file.CHECKPOINT_STATE == f"{checkpoint_files.STATE}.json"
    assert token_file.RUN_CONFIG == run_folder.CONFIG_NAME
    assert token_file._CHECKPOINT_NAME.pattern == checkpoint._NAME.pattern


def test_a_checkpoint_folder_names_the_export_command(tmp_path):
    run = fake_run(tmp_path / "run", steps=(3, 6))
    message = _refused(run / "checkpoints" / "checkpoint-3")
    assert message.startswith(f"{run}/checkpoints/checkpoint-3 is a training checkpoint (it holds train_state.json), "
                              "not a soft token file")
    command, out = EXPORT.search(message).groups()
    assert command == f"agsm export --run {run} --checkpoint checkpoint-3 --out {run}/export-checkpoint-3"
    assert out == f"{run}/export-checkpoint-3" and "\n" not in message


def test_a_run_folder_without_its_token_file_names_its_latest_checkpoint(tmp_path):
    run = fake_run(tmp_path / "run", steps=(2, 10, 9))  # checkpoint-10 is the latest, though it sorts first as text
    message = _refused(run)
    assert message.startswith(f"{run} is a run folder without {FILE_NAME}")
    assert EXPORT.search(message).group(1) == (f"agsm export --run {run} --checkpoint checkpoint-10 --out "
                                               f"{run}/export-checkpoint-10")
    assert _refused(run / FILE_NAME) == message  # the file inside it, named directly


def test_a_run_folder_before_its_first_checkpoint_says_to_train_on(tmp_path):
    message = _refused(fake_run(tmp_path / "run"))
    assert "has no checkpoint yet" in message and "train.checkpoint_every" in message


def test_a_checkpoint_outside_its_run_says_to_put_it_back(tmp_path):
    folder = tmp_path / "copied"
    folder.mkdir()
    (folder / "train_state.json").write_text("{}")
    message = _refused(folder)
    assert "outside a run folder" in message
    assert "`agsm export --run <run> --checkpoint checkpoint-N --out <folder>`" in message


def test_the_export_command_is_quoted_for_a_shell(tmp_path):
    run = fake_run(tmp_path / "my run", steps=(4,))
    command, out = EXPORT.search(_refused(run)).groups()
    assert shlex.split(command)[2:] == ["--run", str(run), "--checkpoint", "checkpoint-4", "--out",
                                        str(run / "export-checkpoint-4")]
    assert shlex.split(out) == [str(run / "export-checkpoint-4")]


def test_another_folder_keeps_the_plain_message(tmp_path):
    assert _refused(tmp_path) == (f"no soft token file at {tmp_path / FILE_NAME}; pass a {FILE_NAME} file or the "
                                  "folder holding it")


def test_a_foreign_safetensors_file_is_one_shortened_line(tmp_path):
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({f"down_blocks.{i}.attentions.0.proj_in.weight": torch.zeros(2) for i in range(40)}, str(path))
    message = _refused(path, ValueError)
    assert "\n" not in message and len(message) < 600
    assert message.startswith(f"{path} is not an agsm soft token file: it holds 40 tensors (down_blocks.0.")
    assert "... (37 more)" in message and "no format_version" in message
    assert "`agsm export`" in message


def test_a_checkpoints_own_state_file_names_the_export_command(tmp_path):
    run = fake_run(tmp_path / "run", steps=(5,))
    state = run / "checkpoints" / "checkpoint-5" / "train_state.safetensors"
    save_file({"tokens.sets": torch.zeros(1, 2, 3), "tokens.time_table": torch.zeros(4, 3)}, str(state))
    message = _refused(state, ValueError)
    assert message.startswith(f"{state} is not an agsm soft token file: it holds 2 tensors (tokens.sets, "
                              "tokens.time_table)")
    assert EXPORT.search(message).group(1).endswith("--checkpoint checkpoint-5 --out "
                                                    f"{run}/export-checkpoint-5")


def test_a_real_run_without_its_token_file_exports_with_the_command_it_names(sd15_dir, image_folder, tmp_path,
                                                                              capsys):
    """End to end: a trained run whose token file is gone, through agsm.load_soft_tokens and `agsm sample --tokens`;
    the command the error gives, run as given, writes tokens that load."""
    import agsm

    run = tmp_path / "run"
    main(["train", "--model.path", str(sd15_dir), "--data.path", str(image_folder), "--train.output_dir", str(run),
          "--train.steps", "2", "--train.checkpoint_every", "1"])
    (run / FILE_NAME).unlink()
    pipe = fresh_pipeline(sd15_dir)
    with pytest.raises(FileNotFoundError) as exc:
        agsm.load_soft_tokens(pipe, run)
    command, out = EXPORT.search(str(exc.value)).groups()
    assert command.endswith(f"--checkpoint checkpoint-2 --out {run}/export-checkpoint-2")
    capsys.readouterr()
    with pytest.raises(SystemExit) as failed:
        main(["sample", "--model", str(sd15_dir), "--tokens", str(run / "checkpoints" / "checkpoint-1"), "--prompt",
              "a red circle", "--out", str(tmp_path / "images"), "--steps", "2"])
    err = capsys.readouterr().err
    assert failed.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"agsm sample: {run}/checkpoints/checkpoint-1 is a training checkpoint")
    assert f"`agsm export --run {run} --checkpoint checkpoint-1 --out {run}/export-checkpoint-1`" in err
    main(shlex.split(command)[1:])
    agsm.load_soft_tokens(pipe, out)
    assert resolve_token_path(out) == run / "export-checkpoint-2" / FILE_NAME
