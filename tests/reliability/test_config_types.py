"""Typed, early config checks: values coerced to their declared types or refused naming key, value and type."""
import pytest

from agsm.cli import main
from agsm.training.config import load_config


def test_exponent_strings_become_floats_on_the_command_line_and_in_yaml(tmp_path):
    assert load_config(None, ["--train.lr", "1e-3"]).train.lr == 1e-3
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-3\n  steps: 1e3\nmodel:\n  resolution: null\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.train.lr == 1e-3 and isinstance(config.train.lr, float)
    assert config.train.steps == 1000 and isinstance(config.train.steps, int)  # a whole number written as 1e3
    assert load_config(None, ["--tokens.stages", "down,mid"]).tokens.stages == ["down", "mid"]
    assert load_config(None, ["--train.steps", "3.0"]).train.steps == 3


@pytest.mark.parametrize("override,message", [
    (["--train.steps", "2.7"], r"option train.steps = 2.7 \(float\) is not a whole number"),
    (["--train.steps", "two"], r"option train.steps = 'two' \(str\) is not a whole number"),
    (["--train.lr", "fast"], r"option train.lr = 'fast' \(str\) is not a number"),
    (["--train.gather_captions", "1"], r"option train.gather_captions = 1 \(int\) is not true or false"),
    (["--tokens.stages", "[[down]]"], r"option tokens.stages\[0\] = \['down'\] \(list\) is not a string"),
    (["--data.path", "{a: 1}"], r"option data.path = \{'a': 1\} \(dict\) is not a string"),
    (["--train.lr", "[0.1]"], r"option train.lr = \[0.1\] \(list\) is not a number"),
    (["--train.steps", "0"], r"train.steps 0 must be >= 1"),
])
def test_wrong_types_are_refused_naming_key_value_and_type(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, override)


def test_sections_and_files_of_the_wrong_shape_are_refused(tmp_path):
    (tmp_path / "list.yaml").write_text("train:\n  - steps\n  - 3\n")
    with pytest.raises(ValueError, match=r"config section 'train' must be a mapping of options, got list"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "top.yaml").write_text("- train\n")
    with pytest.raises(ValueError, match=r"must hold a mapping of sections .* not a list"):
        load_config(tmp_path / "top.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_the_command_refuses_a_bad_value_before_loading_any_model(tmp_path, capsys):
    """The model path does not exist: the type error must come first, as one line with exit status 2."""
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model.path", str(tmp_path / "no-model"), "--train.steps", "2.7",
              "--train.output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("agsm train: option train.steps = 2.7") and "\n" not in err
    assert not (tmp_path / "run").exists()
