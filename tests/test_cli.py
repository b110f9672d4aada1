"""The `agsm` command: config handling, sampling, and the errors a user sees for bad input."""
import json
import re

import pytest

from agsm.cli import main
from agsm.training.config import load_config, parse_overrides


def test_overrides_are_typed_and_unknown_options_listed(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("train:\n  steps: 50\nmethod:\n  gamma_neg: 0.1\n")
    config = load_config(cfg_file, ["--train.steps", "7", "--method.shared_tokens=true", "--tokens.stages", "[down]"])
    assert config.train.steps == 7 and config.method.gamma_neg == 0.1 and config.method.shared_tokens is True
    assert config.tokens.stages == ["down"]
    with pytest.raises(ValueError, match=r"unknown options \['train.stpes'\]; valid train options: .*steps"):
        load_config(None, ["--train.stpes", "3"])
    with pytest.raises(ValueError, match="method.name 'ppo' is not one of"):
        load_config(None, ["--method.name", "ppo"])
    with pytest.raises(ValueError, match="--section.option"):
        parse_overrides(["--steps", "3"])


def test_token_sets_follow_the_method():
    assert load_config(None, []).method.num_token_sets == 2
    assert load_config(None, ["--method.gamma_neg", "0"]).method.num_token_sets == 1
    assert load_config(None, ["--method.shared_tokens", "true"]).method.num_token_sets == 1
    assert load_config(None, ["--method.name", "softrepa"]).method.num_token_sets == 1


def fails_with(capsys, argv, pattern):
    """`agsm ARGV` exits with status 2 and one line `agsm <command>: ...` matching pattern, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert re.search(pattern, err) and "Traceback" not in err, err
    return err


def _train_args(model, data, tmp_path):
    return ["train", "--model.path", str(model), "--data.path", str(data), "--train.output_dir",
            str(tmp_path / "run"), "--train.steps", "2"]


def test_missing_image_is_an_error_naming_the_line(sd15_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.jsonl").write_text(json.dumps({"file_name": "gone.png", "text": "a red circle"}) + "\n")
    fails_with(capsys, _train_args(sd15_dir, data, tmp_path), r"agsm train: .*metadata.jsonl line 1.*gone.png")


def test_empty_caption_is_an_error_naming_the_line(sd15_dir, image_folder, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    lines = (image_folder / "metadata.jsonl").read_text().splitlines()[:3]
    entry = json.loads(lines[1]) | {"text": "  "}
    (data / "metadata.jsonl").write_text("\n".join([lines[0], json.dumps(entry), lines[2]]) + "\n")
    for line in (lines[0], json.dumps(entry), lines[2]):
        name = json.loads(line)["file_name"]
        (data / name).write_bytes((image_folder / name).read_bytes())
    fails_with(capsys, _train_args(sd15_dir, data, tmp_path), r"line 2: empty caption")


def test_sample_writes_images_and_record(sd15_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\ntwo blue squares\n")
    main(["sample", "--model", str(sd15_dir), "--prompts", str(prompts), "--out", str(tmp_path / "out"),
          "--seed", "3", "--steps", "2"])
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [i["prompt"] for i in record["images"]] == ["a red circle", "two blue squares"]
    assert [i["seed"] for i in record["images"]] == [3, 4]
    assert [i["file"] for i in record["images"]] == ["p0000_i00.png", "p0001_i00.png"]
    assert all((tmp_path / "out" / i["file"]).is_file() for i in record["images"])
    assert record["steps"] == 2 and record["guidance"] == 7.0  # SD1.5's evaluation sampler: no sampler.json here
    assert record["device"] == "cpu" and record["dtype"] == "float32"  # --device/--dtype auto on a CPU


def test_sample_refuses_a_token_file_of_another_architecture(sd15_dir, sdxl_dir, tmp_path, capsys):
    from agsm.backbones.unet import UNetBackbone
    from agsm.backbones.architectures import tiny_sdxl_pipeline
    from agsm.tokens.token_file import save_tokens
    from agsm.tokens import SoftTokens

    save_tokens(tmp_path / "soft_tokens.safetensors", SoftTokens(4, 64), UNetBackbone(tiny_sdxl_pipeline()).describe(),
                {"stages": "down"}, "agsm", {}, 1)
    fails_with(capsys, ["sample", "--model", str(sd15_dir), "--tokens", str(tmp_path), "--prompt", "a red circle",
                        "--out", str(tmp_path / "out"), "--steps", "2"], "made for sdxl .* this model is sd15")


def test_sample_needs_exactly_one_prompt_source(sd15_dir, tmp_path, capsys):
    fails_with(capsys, ["sample", "--model", str(sd15_dir), "--out", str(tmp_path)], "exactly one of --prompt")
    fails_with(capsys, ["sample", "--model", str(tmp_path), "--prompt", "a cat", "--out", str(tmp_path)],
               "not a diffusers pipeline folder")


def test_sd3_train_then_sample_with_and_without_tokens(sd3_dir, image_folder, tmp_path):
    """SD3 end to end through the command: flow AGSM tokens, then the stock SD3 pipeline's own sampler."""
    import numpy as np
    from PIL import Image

    main(_train_args(sd3_dir, image_folder, tmp_path) + ["--train.lr", "0.1", "--tokens.blocks", "3"])
    for name, extra in (("base", []), ("tokens", ["--tokens", str(tmp_path / "run")])):
        main(["sample", "--model", str(sd3_dir), "--prompt", "a red circle", "--out", str(tmp_path / name),
              "--steps", "3", *extra])
    record = json.loads((tmp_path / "base" / "run.json").read_text())
    assert record["steps"] == 3 and record["guidance"] == 4.0 and record["size"] == 32  # SD3's defaults
    base, tuned = (np.asarray(Image.open(tmp_path / n / "p0000_i00.png"), dtype=float) for n in ("base", "tokens"))
    assert np.abs(base - tuned).max() > 0


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"agsm {version('agsm')}"


def _subcommand_parsers(parser, words=()):
    """(the words that pick it, its parser) for every command and sub-command under `parser`."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*words, name), sub
                yield from _subcommand_parsers(sub, (*words, name))


def test_every_subcommand_help_names_its_own_command(capsys):
    from agsm.cli import build_parser

    commands = [words for words, _ in _subcommand_parsers(build_parser())]
    assert ("shapes", "pretrain") in commands and ("eval", "shapes") in commands and ("sample",) in commands
    for words in commands:
        with pytest.raises(SystemExit) as exc:
            main([*words, "--help"])
        out = capsys.readouterr().out
        assert exc.value.code == 0, words
        assert out.startswith(f"usage: agsm {' '.join(words)} "), (words, out[:80])


@pytest.mark.parametrize("argv", [
    ["sample", "--model", "m", "--prompt", "a red circle", "--out", "o"],
    ["eval", "shapes", "--model", "m", "--out", "o"],
    ["eval", "coco", "--model", "m", "--coco", "c", "--out", "o"],
    ["eval", "geneval-export", "--model", "m", "--metadata", "x.jsonl", "--out", "o"],
    ["eval", "pie-bench", "--model", "m", "--pie", "p", "--out", "o"],
    ["eval", "edit-shapes", "--model", "m", "--out", "o"],
    ["edit", "--model", "m", "--image", "i.png", "--source-prompt", "a", "--target-prompt", "b", "--out", "o"],
    ["train", "--config", "sd15"],
])
def test_device_cuda_without_cuda_is_a_clear_error(argv, tmp_path, capsys, monkeypatch):
    """Every command that runs a model refuses a missing device before it loads anything, naming the fix."""
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fails_with(capsys, [*argv, "--device", "cuda"], r"--device cuda asks for a CUDA GPU.*available: cpu.*--device auto")


def test_train_has_no_dtype_option(capsys):
    fails_with(capsys, ["train", "--config", "sd15", "--dtype", "bf16"], r"train.mixed_precision")
