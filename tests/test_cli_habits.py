"""The command's small habits (issue 27, item 5): counts read right for 1, every command's help complete, --debug
anywhere on the line, and a light `agsm --version`."""
import subprocess
import sys
from pathlib import Path

import pytest

from agsm.cli import build_parser, main
from agsm.utils.counts import count

AGSM = Path(sys.executable).with_name("agsm")


def _command(*words):
    parser = build_parser()
    for word in words:
        parser = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)
                      ).choices[word]
    return parser


def _choice_help(parser, word):
    action = next(a for a in parser._actions if hasattr(a, "_choices_actions"))
    return next(c.help for c in action._choices_actions if c.dest == word)


def test_counts_take_the_noun_s_number():
    assert count(1, "image") == "1 image" and count(0, "image") == "0 images" and count(3, "image") == "3 images"
    assert count(1, "process", "processes") == "1 process" and count(2, "process", "processes") == "2 processes"


def test_sample_says_1_image(sd15_dir, tmp_path, capsys):
    main(["sample", "--model", str(sd15_dir), "--prompt", "a red circle", "--steps", "1", "--out", str(tmp_path / "o")])
    assert "wrote 1 image and run.json" in capsys.readouterr().out


def test_help_texts_are_complete():
    from agsm.editing.registry import EDITORS
    from agsm.shapes.pretraining.cli import CONFIGS

    report = _command("report")
    assert all(a.help for a in report._actions if a.option_strings), "every agsm report option has help"
    edit_help = _choice_help(build_parser(), "edit")
    assert len(EDITORS) == 7 and all(name in edit_help for name in EDITORS), edit_help
    pretrain_help = _choice_help(_command("shapes"), "pretrain")
    assert set(CONFIGS) == {"sd15", "sd3", "sdxl"} and all(a in pretrain_help for a in CONFIGS), pretrain_help


@pytest.mark.parametrize("argv", [
    ["--debug", "sample", "--model", "m", "--prompt", "p", "--out", "o", "--images-per-prompt", "0"],
    ["sample", "--debug", "--model", "m", "--prompt", "p", "--out", "o", "--images-per-prompt", "0"],
    ["sample", "--model", "m", "--prompt", "p", "--out", "o", "--images-per-prompt", "0", "--debug"],
])
def test_debug_anywhere_shows_the_traceback(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--images-per-prompt 0 must be >= 1"):
        main(argv)


def test_debug_after_train_is_not_a_config_option(tmp_path, monkeypatch, capsys):
    """`agsm train --debug ...`: the error is raised (no one-line message), not 'unknown option --debug'."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="data.path is empty"):
        main(["train", "--debug", "--model.path", "m", "--train.output_dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exc:  # and without it, the one-line message
        main(["train", "--model.path", "m", "--train.output_dir", str(tmp_path / "run2")])
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_debug_after_eval_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception) as exc:
        main(["eval", "shapes", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"), "--debug"])
    assert not isinstance(exc.value, SystemExit)  # the error itself, with its traceback, not the one-line exit


def test_importing_the_cli_loads_no_torch():
    code = "import agsm.cli, sys; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    code = "from agsm import load_soft_tokens, agsm_targets; import agsm; print(callable(load_soft_tokens), agsm.__version__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[0] == "True"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import agsm
        agsm.nothing  # noqa: B018


def test_version_is_quick_and_light():
    from importlib.metadata import version

    code = ("import sys; from agsm.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == f"agsm {version('agsm')}" and out[1] == "False"
    if AGSM.exists():
        assert subprocess.run([str(AGSM), "--version"], capture_output=True, text=True,
                              check=True).stdout.strip() == f"agsm {version('agsm')}"
