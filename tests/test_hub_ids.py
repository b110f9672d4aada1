"""Models by Hugging Face Hub id (agsm.backbones.model_source): a hand-built Hub cache, offline throughout.

The cache holds the toy SD1.5 pipeline twice, in the Hub's own layout (models--org--toy/snapshots/<commit>/ and
refs/<branch>): seed 0 at `main` (with seed 3's weights as its fp16 weights variant), seed 1 at the branch `v2`.
Every test runs with HF_HUB_OFFLINE set, so nothing touches the network; a cached id must load, an uncached one must
name itself and the command that downloads it.
"""
import json
import re
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors import safe_open

from agsm.backbones.architectures import build_pipeline
from agsm.backbones.factory import load_backbone
from agsm.backbones.model_source import ModelSource, download_command, resolve_model
from agsm.cli import build_parser, main
from agsm.sample import load_pipeline, sample
from agsm.training.config import ModelConfig, load_config
from agsm.training.loop import train

REPO = "org/toy"
MAIN_COMMIT, V2_COMMIT = "1" * 40, "2" * 40


def _write_snapshot(cache: Path, commit: str, branch: str, seed: int) -> Path:
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    build_pipeline("sd15", "toy", seed=seed).save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / branch).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf_home") / "hub"
    main = _write_snapshot(cache, MAIN_COMMIT, "main", seed=0)
    build_pipeline("sd15", "toy", seed=3).save_pretrained(main, variant="fp16")  # *.fp16.safetensors beside
    _write_snapshot(cache, V2_COMMIT, "v2", seed=1)
    return cache


@pytest.fixture
def offline_hub(hub_cache, monkeypatch):
    """This cache as the Hub cache, offline. The Hub client reads its constants when called, not only at import."""
    for name, value in (("HF_HOME", str(hub_cache.parent)), ("HF_HUB_CACHE", str(hub_cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub_cache


def _unet_weight(pipe) -> torch.Tensor:
    return pipe.unet.conv_in.weight.detach()


@pytest.mark.parametrize("name", ["./no-such-model", "~/no-such-agsm-model", "runs/a/b", "no-such-model"])
def test_a_path_that_does_not_exist_says_so(name, offline_hub, tmp_path):
    for load in (load_pipeline, load_backbone):
        with pytest.raises(FileNotFoundError, match=re.escape(f"model folder {name} does not exist")):
            load(name)
    absolute = tmp_path / "gone"
    with pytest.raises(FileNotFoundError, match=re.escape(f"model folder {absolute} does not exist")):
        load_pipeline(absolute)


def test_the_command_names_the_missing_folder(offline_hub, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sample", "--model", "./models/sd15", "--prompt", "a red circle", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    assert "model folder ./models/sd15 does not exist" in capsys.readouterr().err


def test_an_uncached_id_offline_names_the_id_and_the_download_command(offline_hub):
    for load in (load_pipeline, load_backbone):
        with pytest.raises(FileNotFoundError) as error:
            load("org/absent")
        message = str(error.value)
        assert "org/absent" in message and "HF_HUB_OFFLINE" in message
        assert download_command("org/absent") in message and "--model DIR" in message
    assert download_command("org/absent").startswith("hf download org/absent")  # the installed client has `hf`
    with pytest.raises(FileNotFoundError) as error:  # a revision the cache lacks: the command fetches that one
        load_pipeline(REPO, revision="v3")
    message = str(error.value)
    assert "revision 'v3'" in message and "hf download org/toy --revision v3 --local-dir DIR" in message


def test_a_cached_id_samples_offline_and_records_its_snapshot(offline_hub, tmp_path):
    pipe = load_pipeline(REPO)
    torch.testing.assert_close(_unet_weight(pipe), _unet_weight(build_pipeline("sd15", "toy", seed=0)))
    paths = sample(REPO, ["a red circle"], tmp_path / "main", steps=2, device="cpu", dtype="float32")
    assert paths[0].is_file()
    record = json.loads((tmp_path / "main" / "run.json").read_text())
    assert (record["model"], record["revision"], record["snapshot"]) == (REPO, None, MAIN_COMMIT)

    # the command: --model-revision may stand before or after --model
    main(["sample", "--model-revision", "v2", "--model", REPO, "--prompt", "a red circle", "--steps", "1",
          "--device", "cpu", "--out", str(tmp_path / "v2")])
    record = json.loads((tmp_path / "v2" / "run.json").read_text())
    assert (record["model"], record["revision"], record["snapshot"]) == (REPO, "v2", V2_COMMIT)


def test_revision_selects_the_snapshot(offline_hub):
    main_pipe, v2_pipe = load_pipeline(REPO), load_pipeline(REPO, revision="v2")
    by_commit = load_pipeline(ModelSource(REPO, revision=MAIN_COMMIT))
    torch.testing.assert_close(_unet_weight(v2_pipe), _unet_weight(build_pipeline("sd15", "toy", seed=1)))
    assert not torch.equal(_unet_weight(main_pipe), _unet_weight(v2_pipe))
    assert torch.equal(_unet_weight(by_commit), _unet_weight(main_pipe))
    assert resolve_model(REPO, revision="v2").snapshot == V2_COMMIT
    assert resolve_model(REPO).snapshot == MAIN_COMMIT


def test_weights_variant_loads_the_variant_files(offline_hub, tmp_path):
    fp16 = load_pipeline(REPO, weights_variant="fp16")
    torch.testing.assert_close(_unet_weight(fp16), _unet_weight(build_pipeline("sd15", "toy", seed=3)))
    sample(ModelSource(REPO, weights_variant="fp16"), ["a red circle"], tmp_path / "out", steps=1, device="cpu")
    assert json.loads((tmp_path / "out" / "run.json").read_text())["weights_variant"] == "fp16"


@pytest.mark.slow
def test_a_cached_id_trains_offline_and_the_run_records_it(offline_hub, image_folder, tmp_path):
    out = tmp_path / "run"
    config = load_config(None, ["--model.path", REPO, "--model.revision", "v2", "--data.path", str(image_folder),
                                "--train.output_dir", str(out), "--train.steps", "2", "--train.images_per_step", "2",
                                "--train.checkpoint_every", "100"])
    token_file = train(config)
    saved = (out / "config.yaml").read_text()
    assert f"path: {REPO}" in saved and "revision: v2" in saved
    with safe_open(str(token_file), framework="pt") as f:
        trained_on = json.loads(f.metadata()["trained_on"])
    assert (trained_on["model"], trained_on["revision"], trained_on["snapshot"]) == (REPO, "v2", V2_COMMIT)


def test_a_local_folder_comes_first_and_takes_no_revision(offline_hub, tmp_path, monkeypatch):
    """A folder named like a Hub id is the folder, not the id; a revision makes no sense for it."""
    monkeypatch.chdir(tmp_path)
    build_pipeline("sd15", "toy", seed=2).save_pretrained(tmp_path / REPO)
    torch.testing.assert_close(_unet_weight(load_pipeline(REPO)),
                               _unet_weight(build_pipeline("sd15", "toy", seed=2)))
    with pytest.raises(ValueError, match="is a local folder; drop the revision"):
        load_pipeline(REPO, revision="v2")


def test_the_options_travel_with_the_model(offline_hub):
    parser = build_parser()
    for argv in (["--model", REPO, "--model-revision", "v2", "--weights-variant", "fp16"],
                 ["--weights-variant", "fp16", "--model-revision", "v2", "--model", REPO]):
        args, _ = parser.parse_known_args(["sample", *argv, "--prompt", "x", "--out", "o"])
        assert args.model == REPO and (args.model.revision, args.model.weights_variant) == ("v2", "fp16")
    args, _ = parser.parse_known_args(["sample", "--model", REPO, "--prompt", "x", "--out", "o"])
    assert type(args.model) is str  # without them the model stays the plain name
    model = ModelConfig(path=ModelSource(REPO, "v2", "fp16"))  # a config keeps plain YAML values
    assert (type(model.path), model.path, model.revision, model.variant) == (str, REPO, "v2", "fp16")
    assert (model.source().revision, model.source().weights_variant) == ("v2", "fp16")
    model = load_config(None, ["--model.path", REPO, "--revision", "v2", "--variant", "fp16"]).model  # diffusers' names
    assert (model.revision, model.variant) == ("v2", "fp16")
