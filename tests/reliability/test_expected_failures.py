"""Every expected failure a clear message: full disk, tampered token files, user errors without a traceback."""
import errno
import io
import json

import pytest
from safetensors.torch import save_file

from agsm.utils import atomic_files
from agsm.utils.atomic_files import DiskFullError
from agsm.cli import main
from agsm.pipelines import load_soft_tokens
from agsm.tokens.token_file import read_tokens, save_tokens
from agsm.tokens import SoftTokens
from agsm.training.loop import train

INFO = {"family": "unet", "architecture": "sd15", "token_width": 8, "num_train_timesteps": 1000}


class FullDisk(io.BytesIO):
    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_names_the_folder_and_keeps_the_last_one(tiny_config, tiny_args, tmp_path,
                                                                                    monkeypatch, capsys):
    real_open = open

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):  # the disk fills up while step 2 is being saved
        return FullDisk() if "checkpoint-2" in str(path) else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic_files, "open", open_on_a_full_disk, raising=False)
    with pytest.raises(DiskFullError, match=r"no space left in .*checkpoints/checkpoint-2.tmp to write "
                                            r"rng-0.safetensors .*free some space"):
        train(tiny_config())
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint-1"]  # no torn .tmp, the last one intact
    assert not list((checkpoints / "checkpoint-1").glob(".*tmp*"))
    monkeypatch.undo()
    assert train(tiny_config(), resume=True).is_file()  # space freed: --resume finishes the run

    # Too little free space is seen before writing, and the command says so in one line.
    monkeypatch.setattr(atomic_files.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(SystemExit) as exc:
        main(["train", *tiny_args(out=tmp_path / "other")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert "agsm train: no space left in " in err and "(needs about " in err and "1000 B free" in err


def test_results_json_survives_a_full_disk(tmp_path, monkeypatch):
    """The issue's case: a full disk used to replace a valid results.json with truncated JSON."""
    path = atomic_files.write_json(tmp_path / "results.json", {"mean": 0.5})
    monkeypatch.setattr(atomic_files, "open", lambda *a, **k: FullDisk(), raising=False)
    with pytest.raises(DiskFullError, match=f"no space left in {tmp_path} to write results.json"):
        atomic_files.write_json(path, {"mean": 0.7, "verdicts": list(range(1000))})
    assert json.loads(path.read_text()) == {"mean": 0.5} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def _rewrite(path, tmp_path, change, keep_digest=True):
    """A copy of the token file with its tensors or metadata changed by hand."""
    tensors, meta = read_tokens(path)
    change(tensors, meta)
    if not keep_digest:
        meta.pop("digest")
    out = tmp_path / "tampered.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, out, metadata=meta)
    return out


@pytest.mark.parametrize("change,keep_digest,message", [
    (lambda t, m: m.update(stages="up"), True, "were changed after `agsm train` wrote them"),
    (lambda t, m: m.update(num_train_timesteps="10"), True, "were changed after"),
    (lambda t, m: m.update(stages="sideways"), False, "stages='sideways' is not a comma-separated subset"),
    (lambda t, m: t.update(time_table=t["time_table"][:3]), False, "num_buckets='100' but the tensors have 3"),
    (lambda t, m: t.update(psi_pos=t["psi_pos"][:, :6], psi_neg=t["psi_neg"][:, :6]), False,
     "time_table has shape \\[100, 8\\]; expected \\[num_buckets, 6\\]"),
    (lambda t, m: m.update(num_tokens="x"), False, "metadata num_tokens='x' is not a whole number"),
])
def test_tampered_token_files_are_refused(change, keep_digest, message, tmp_path):
    path = save_tokens(tmp_path / "t.safetensors", SoftTokens(4, 8), INFO, {"stages": "down,mid"}, "agsm", {}, 1)
    with pytest.raises(ValueError, match=message):
        read_tokens(_rewrite(path, tmp_path, change, keep_digest))


def test_tokens_for_another_timestep_count_are_refused_by_the_pipeline(sd15_dir, tmp_path):
    from agsm.sample import load_pipeline

    pipe = load_pipeline(sd15_dir)
    width = pipe.unet.config.cross_attention_dim
    info = {**INFO, "token_width": width}
    path = save_tokens(tmp_path / "t.safetensors", SoftTokens(4, width), info, {"stages": "down"}, "agsm", {}, 1)
    tampered = _rewrite(path, tmp_path, lambda t, m: m.update(num_train_timesteps="10"), keep_digest=False)
    with pytest.raises(ValueError, match="num_train_timesteps=10 but this model's scheduler has 1000"):
        load_soft_tokens(pipe, tampered)


def test_user_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["eval", "shapes", "--model", str(tmp_path / "missing"), "--out", str(tmp_path), "--images-per-prompt", "0"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err == "agsm eval shapes: --images-per-prompt 0 must be >= 1\n"
    with pytest.raises(ValueError, match="--images-per-prompt 0"):
        main(["--debug", *argv])
