"""The shipped configs: they parse, carry the paper's settings, ship in the wheel and load by name; every option
is documented once (field help) and listed by `agsm train -h`."""
import dataclasses
import importlib.resources
import logging
from pathlib import Path

import pytest

from agsm.training import config as config_module
from agsm.cli import main
from agsm.training.config import Config, load_config, option_help, shipped_configs

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "src" / "agsm" / "configs").glob("*.yaml"))


def test_the_configs_live_in_the_package():
    assert sorted(p.stem for p in CONFIGS) == ["sd15", "sd15-dpo", "sd15-inpo", "sd15-softrepa", "sd15-spo", "sd3",
                                               "sdxl"]
    assert not (ROOT / "configs").exists()  # one copy only: the one that ships


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads(path):
    config = load_config(path)
    # soft tokens train at 1e-3; the preference configs (docs/preference.md) tune the backbone at their papers' rates
    assert config.tokens.num_tokens == 4 and (config.train.lr == 1e-3) == (config.method.name not in ("dpo", "inpo",
                                                                                                       "spo"))


def test_exponent_notation_is_a_number_on_the_command_line_and_in_yaml(tmp_path):
    config = load_config(None, ["--train.min_lr", "1e-5", "--method.temperature=5e-2"])
    assert config.train.min_lr == 1e-5 and config.method.temperature == 0.05
    (tmp_path / "c.yaml").write_text("train:\n  min_lr: 1e-5\n")
    assert load_config(tmp_path / "c.yaml").train.min_lr == 1e-5
    with pytest.raises(ValueError, match="min_lr"):
        load_config(None, ["--train.min_lr", "small"])


def test_a_bare_no_is_the_word_no_for_a_text_option(tmp_path):
    # YAML 1.1 reads `no` as false: without the rule, `--train.mixed_precision no` (the accelerate spelling) failed
    assert load_config(None, ["--train.mixed_precision", "no"]).train.mixed_precision == "no"
    (tmp_path / "c.yaml").write_text("train:\n  mixed_precision: no\n")
    assert load_config(tmp_path / "c.yaml").train.mixed_precision == "no"
    with pytest.raises(ValueError, match="'yes' is not one of 'no', 'bf16', 'fp16'"):
        load_config(None, ["--train.mixed_precision", "yes"])


def test_a_shipped_config_loads_by_name_and_a_path_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing named sd15 here: the name must come from the package
    by_name = load_config("sd15")
    assert by_name == load_config(ROOT / "src" / "agsm" / "configs" / "sd15.yaml")
    assert by_name.tokens.init == "empty_prompt" and load_config("sd3").tokens.time_table == "per_block"
    assert load_config("sd15.yaml") == by_name
    (tmp_path / "mine.yaml").write_text("train:\n  steps: 7\n")
    assert load_config("mine.yaml").train.steps == 7 and load_config(tmp_path / "mine.yaml").train.steps == 7
    (tmp_path / "sd15").write_text("train:\n  steps: 9\n")  # an existing file wins over a shipped name
    assert load_config("sd15").train.steps == 9


def test_a_wrong_config_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for wrong in ("sd16", "configs/sd15.yaml"):
        with pytest.raises(ValueError, match=rf"config '{wrong}' is neither a file nor a shipped config; .*"
                                             "sd15, sd15-dpo, sd15-inpo, sd15-softrepa, sd15-spo, sd3, sdxl"):
            load_config(wrong)


def test_the_wheel_holds_the_configs(monkeypatch):
    """The installed package holds them (importlib.resources), and setuptools' own build_py, configured from
    pyproject.toml's package-data only, puts every one of them in the wheel."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    shipped = importlib.resources.files("agsm") / "configs"
    assert sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml")) == [p.name for p in CONFIGS]
    assert shipped_configs() == sorted(p.stem for p in CONFIGS)

    monkeypatch.chdir(ROOT)  # setuptools reads package_dir (src) relative to the project root
    dist = Distribution({"script_name": "setup.py"})
    apply_configuration(dist, "pyproject.toml")
    dist.include_package_data = False  # only the package-data globs: no egg-info written into the source tree
    build_py = dist.get_command_obj("build_py")
    build_py.ensure_finalized()
    in_wheel = {name for package, _, _, names in build_py.data_files if package == "agsm" for name in names}
    assert {f"configs/{p.name}" for p in CONFIGS} <= in_wheel


def test_train_loads_a_shipped_config_by_name(tmp_path, monkeypatch):
    """`agsm train --config sd15` reads the shipped file: its settings reach the run (here: up to the data check)."""
    import agsm.training.loop as train_module

    seen = {}
    monkeypatch.setattr(train_module, "train", lambda config, **kw: seen.setdefault("config", config))
    main(["train", "--config", "sd15", "--train.output_dir", str(tmp_path / "run")])
    assert seen["config"].tokens.init == "empty_prompt" and seen["config"].train.restart_every == 10000
    assert seen["config"].train.output_dir == str(tmp_path / "run")


def _all_fields():
    yield "", dataclasses.fields(Config)
    for section in dataclasses.fields(Config):
        yield section.name + ".", dataclasses.fields(section.default_factory)


def test_every_config_field_carries_its_help():
    missing = [prefix + f.name for prefix, fields in _all_fields() for f in fields
               if not str(f.metadata.get("help", "")).strip()]
    assert not missing, f"config fields without metadata={{'help': ...}}: {missing}"


def test_train_help_lists_every_option_with_type_default_and_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # argparse wraps help to the terminal (and may split at a hyphen)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    positions = []
    for section in dataclasses.fields(Config):
        header = flat.index(f"{section.name} options: {section.metadata['help']}")
        positions.append(header)
        for f in dataclasses.fields(section.default_factory):
            flag = f"--{section.name}.{f.name}"
            start = flat.index(f"{flag} ", header)  # listed after its section's heading
            shown = flat[start:start + 600]
            assert " ".join(f.metadata["help"].split())[:40] in shown, flag
            assert "(default: " in shown, flag
    assert positions == sorted(positions)  # grouped: model, data, tokens, method, train in order
    assert "--train.steps INT" in flat and "--tokens.stages LIST[STR]" in flat and "--model.resolution INT|NULL" in flat
    assert "(default: 1000)" in flat and "shipped configs (--config NAME): sd15, sd15-dpo, sd15-inpo, sd15-softrepa, sd15-spo, sd3, sdxl" in flat


def test_options_still_parse_as_overrides_after_the_help_lists_them(capsys):
    """The listed options are not argparse options: both spellings keep going through parse_overrides."""
    config = load_config(None, ["--train.steps", "7", "--method.gamma_neg=0.1"])
    assert config.train.steps == 7 and config.method.gamma_neg == 0.1
    with pytest.raises(SystemExit) as exc:
        main(["train", "--train.stpes", "3"])
    assert exc.value.code == 2
    assert "unknown options ['train.stpes']; valid train options:" in capsys.readouterr().err


def test_option_help_covers_every_field_exactly_once():
    listed = [flag for _, _, options in option_help() for flag, _, _ in options]
    expected = [f"--{prefix}{f.name}" for prefix, fields in list(_all_fields())[1:] for f in fields]
    assert listed == expected


def test_keep_checkpoints_is_a_deprecated_alias_of_checkpoints_total_limit(tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  keep_checkpoints: 5\n")  # what the config.yaml of earlier runs holds
    with caplog.at_level(logging.WARNING, logger="agsm.config"):
        assert load_config(old).train.checkpoints_total_limit == 5
    assert "train.keep_checkpoints is deprecated: it is now called train.checkpoints_total_limit" in caplog.text
    assert load_config(None, ["--train.keep_checkpoints", "3"]).train.checkpoints_total_limit == 3
    assert load_config(old, ["--train.checkpoints_total_limit", "4"]).train.checkpoints_total_limit == 4
    assert config_module.from_dict({"train": {"keep_checkpoints": 6}}).train.checkpoints_total_limit == 6
    with pytest.raises(ValueError, match="train.keep_checkpoints is the old name of train.checkpoints_total_limit"):
        config_module.from_dict({"train": {"keep_checkpoints": 6, "checkpoints_total_limit": 2}})
    assert "keep_checkpoints" not in load_config(old).to_dict()["train"]  # runs write only the new name
    assert load_config(None, ["--train.checkpoints_total_limit", "null"]).train.checkpoints_total_limit is None
    with pytest.raises(ValueError, match="train.checkpoints_total_limit 0 must be >= 1"):
        load_config(None, ["--train.checkpoints_total_limit", "0"])
