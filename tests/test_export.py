"""Token export: train.export_tokens picks the run's main soft_tokens.safetensors (online or EMA) with the other
beside it, and `agsm export` writes the same file from any checkpoint of a run."""
import json

import pytest
import torch
from safetensors.torch import load_file

from agsm.cli import main
from agsm.training.config import load_config
from agsm.training.export import export_checkpoint, export_run, token_metadata
from agsm.tokens.token_file import read_tokens
from agsm.tokens import SoftTokens
from agsm.training.loop import train
from agsm.training.checkpoint_files import CheckpointError

META = token_metadata({"family": "unet", "architecture": "sd15", "token_width": 8, "num_train_timesteps": 1000},
                      {"stages": "down,mid"}, "agsm", {"gamma_neg": 1.0})


def _pair():
    torch.manual_seed(0)
    return SoftTokens(4, 8), SoftTokens(4, 8)


def test_export_tokens_picks_the_main_file_and_writes_the_other_beside_it(tmp_path):
    online, ema = _pair()
    export_run(tmp_path, online, ema, META, step=7)  # the default: online, as the public code samples
    main_tensors, main_meta = read_tokens(tmp_path / "soft_tokens.safetensors")
    side_tensors, side_meta = read_tokens(tmp_path / "soft_tokens_ema.safetensors")
    assert torch.equal(main_tensors["psi_pos"], online.sets[0]) and main_meta["weights"] == "online"
    assert torch.equal(side_tensors["psi_pos"], ema.sets[0]) and side_meta["weights"] == "ema"
    assert main_meta["step"] == "7" and not (tmp_path / "soft_tokens_online.safetensors").exists()

    export_run(tmp_path, online, ema, META, step=8, main="ema")
    main_tensors, main_meta = read_tokens(tmp_path / "soft_tokens.safetensors")
    side_tensors, side_meta = read_tokens(tmp_path / "soft_tokens_online.safetensors")
    assert torch.equal(main_tensors["psi_pos"], ema.sets[0]) and main_meta["weights"] == "ema"
    assert torch.equal(side_tensors["psi_pos"], online.sets[0]) and side_meta["weights"] == "online"
    assert not (tmp_path / "soft_tokens_ema.safetensors").exists()  # it would duplicate the main file
    with pytest.raises(ValueError, match="train.export_tokens 'best' is not one of 'online'"):
        export_run(tmp_path, online, ema, META, step=8, main="best")


def test_export_tokens_defaults_to_the_online_tokens_and_is_checked():
    assert load_config().train.export_tokens == "online"
    assert load_config(None, ["--train.export_tokens", "ema"]).train.export_tokens == "ema"
    with pytest.raises(ValueError, match="train.export_tokens 'last' is not one of 'online', 'ema'"):
        load_config(None, ["--train.export_tokens", "last"])


def _same_tensors(a, b):
    a, b = load_file(a), load_file(b)
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _same_file(a, b):
    """The same tensors and metadata (safetensors may order the metadata differently from one write to the next)."""
    return _same_tensors(a, b) and read_tokens(a)[1] == read_tokens(b)[1]


@pytest.mark.slow
def test_agsm_export_writes_any_checkpoints_tokens(sd15_dir, image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config(None, ["--model.path", str(sd15_dir), "--data.path", str(image_folder), "--data.cache_dir",
                             str(tmp_path / "cache"), "--train.output_dir", str(run), "--train.steps", "2",
                             "--train.checkpoint_every", "1", "--train.export_tokens", "ema", "--train.lr", "0.1",
                             "--method.ema_decay", "0.5"]))
    assert read_tokens(run / "soft_tokens.safetensors")[1]["weights"] == "ema"

    # The last checkpoint exports exactly what the run exported, for either weights; the default is the run's.
    main(["export", "--run", str(run), "--out", str(tmp_path / "default")])
    assert f"wrote {tmp_path / 'default' / 'soft_tokens.safetensors'}" in capsys.readouterr().out
    assert _same_file(tmp_path / "default" / "soft_tokens.safetensors", run / "soft_tokens.safetensors")
    main(["export", "--run", str(run), "--checkpoint", "checkpoint-2", "--weights", "online", "--out",
          str(tmp_path / "online")])
    assert _same_file(tmp_path / "online" / "soft_tokens.safetensors", run / "soft_tokens_online.safetensors")
    assert read_tokens(tmp_path / "online")[1]["weights"] == "online"

    # An intermediate checkpoint: its own step and tokens, loadable like any token file.
    main(["export", "--run", str(run), "--checkpoint", "checkpoint-1", "--weights", "online", "--out",
          str(tmp_path / "early")])
    early_tensors, early_meta = read_tokens(tmp_path / "early")
    assert early_meta["step"] == "1" and early_meta["architecture"] == read_tokens(run)[1]["architecture"]
    card = (tmp_path / "early" / "README.md").read_text()  # the exported file travels with its model card
    assert "library_name: agsm" in card and "agsm" in card.split("---")[2]
    assert not torch.equal(early_tensors["psi_pos"], read_tokens(tmp_path / "online")[0]["psi_pos"])

    # A checkpoint of an earlier agsm keeps no token metadata: it comes from config.yaml and the backbone.
    state = run / "checkpoints" / "checkpoint-2" / "train_state.json"
    saved = json.loads(state.read_text())
    del saved["token_file"]
    state.write_text(json.dumps(saved))
    export_checkpoint(run, tmp_path / "old", weights="ema")
    assert _same_file(tmp_path / "old" / "soft_tokens.safetensors", run / "soft_tokens.safetensors")

    with pytest.raises(CheckpointError, match=r"'checkpoint-9' is not a finished checkpoint of the run in .*; give "
                                              "'latest' or one of: checkpoint-1, checkpoint-2"):
        export_checkpoint(run, tmp_path / "x", checkpoint="checkpoint-9")
    with pytest.raises(SystemExit) as exc:
        main(["export", "--run", str(tmp_path / "no-run"), "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "--run " in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
