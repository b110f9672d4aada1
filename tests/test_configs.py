"""The shipped configs: they parse, carry the paper's settings, ship in the wheel and load by name; every option
is documented once (field help) and listed by `agsm train -h`."""
import dataclasses
import importlib.resources
import logging
from pathlib import Path

import pytest

from agsm.training import config as config_module
from agsm.cli import main
from agsm.objectives import get_method, method_names
from agsm.training.config import Config, load_config, option_help, shipped_configs

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "src" / "agsm" / "configs").glob("*.yaml"))


def test_the_configs_live_in_the_package():
    assert sorted(p.stem for p in CONFIGS) == ["sd15", "sd15-dpo", "sd15-inpo", "sd15-softrepa", "sd15-spo", "sd3",
                                               "sd3-softrepa", "sdxl", "sdxl-dpo", "sdxl-inpo", "sdxl-softrepa",
                                               "sdxl-spo"]
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
                                             + ", ".join(sorted(p.stem for p in CONFIGS))):
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
    """(prefix, fields) of Config itself, then of every section: the method section once per registered method."""
    yield "", dataclasses.fields(Config)
    for section in dataclasses.fields(Config):
        if section.name == "method":
            for name in method_names():
                yield "method.", dataclasses.fields(get_method(name).options)
        else:
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
    for section, about, options in option_help():
        header = flat.index(f"{section} options: {about}")
        positions.append(header)
        for flag, metavar, text in options:
            start = flat.index(f"{flag} {metavar} ", header)  # listed after its section's heading
            shown = flat[start:start + 600]
            assert " ".join(text.split())[:40] in shown, flag
            assert "(default: " in shown, flag
    assert positions == sorted(positions)  # grouped: model, data, tokens, method (then each method), tune, train
    assert "--train.steps INT" in flat and "--tokens.stages LIST[STR]" in flat and "--model.resolution INT|NULL" in flat
    names = ", ".join(sorted(p.stem for p in CONFIGS))
    assert "(default: 1000)" in flat and f"shipped configs (--config NAME): {names}" in flat


def test_each_method_lists_its_own_options_and_defaults_under_its_heading():
    table = {section: {flag: text for flag, _, text in options} for section, _, options in option_help()}
    assert list(table)[3:10] == ["method", "method.name agsm", "method.name softrepa", "method.name dsm",
                                 "method.name dpo", "method.name inpo", "method.name spo"]
    assert table["method.name agsm"]["--method.temperature"].endswith("(default: 0.1)")
    assert table["method.name softrepa"]["--method.temperature"].endswith("(default: 0.07)")
    assert table["method.name softrepa"]["--method.scale"].endswith("(default: 4)")
    assert table["method.name dpo"]["--method.beta"].endswith("(default: 5000)")
    assert table["method.name inpo"]["--method.beta"].endswith("(default: 5000)")
    assert table["method.name spo"]["--method.beta"].endswith("(default: 10)")
    assert table["method.name spo"]["--method.steps"].endswith("(default: 20)")
    assert "--method.gamma_neg" not in table["method.name softrepa"]


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
    expected = []
    for prefix, fields in list(_all_fields())[1:]:
        expected += [f"--{prefix}{f.name}" for f in fields if f"--{prefix}{f.name}" not in expected or f.name != "name"]
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


# The method section a config.yaml of the previous version holds: every method's options in one bag (its defaults).
OLD_METHOD_SECTION = {
    "name": "agsm", "gamma_pos": 1.0, "gamma_neg": 1.0, "temperature": 0.1, "reward_space": "target",
    "shared_tokens": False, "bradley_terry": False, "ema_decay": 0.9999, "ema_init": "copy", "hard_negatives": 0.0,
    "hard_negative_kinds": ["color", "shape", "count", "relation"], "noise_sharing": "image", "ema_at": "auto",
    "ema_step": 1000 / 28, "softrepa_temperature": 0.07, "softrepa_scale": 4.0, "diagonal_weight": 0.0,
    "dpo_beta": 5000.0, "inpo_inversion_steps": 10, "inpo_inversion_eta": 0.1, "inpo_invert_with": "policy",
    "spo_steps": 20, "spo_eta": 1.0, "spo_guidance": 5.0, "spo_candidates": 4, "spo_divert_start": 4,
    "spo_threshold": 0.3, "spo_beta": 10.0, "spo_clip": 0.1, "spo_scorer": "shapes_judge"}


def _old_run(folder: Path, **method) -> Path:
    import yaml

    folder.mkdir(parents=True)
    old = Config().to_dict()
    old["method"] = {**OLD_METHOD_SECTION, **method}
    (folder / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    return folder


@pytest.mark.parametrize("name,old,new", [
    ("softrepa", {"softrepa_temperature": 0.05, "softrepa_scale": 3.0, "diagonal_weight": 10.0,
                  "noise_sharing": "batch"},
     {"temperature": 0.05, "scale": 3.0, "diagonal_weight": 10.0, "noise_sharing": "batch"}),
    ("agsm", {"gamma_neg": 0.1, "temperature": 0.2, "ema_init": "independent"},
     {"gamma_neg": 0.1, "temperature": 0.2, "ema_init": "independent"}),
    ("dsm", {"ema_decay": 0.9}, {"ema_decay": 0.9}),
    ("dpo", {"dpo_beta": 500.0}, {"beta": 500.0}),
    ("inpo", {"dpo_beta": 2000.0, "inpo_inversion_steps": 5, "inpo_invert_with": "reference"},
     {"beta": 2000.0, "inversion_steps": 5, "invert_with": "reference"}),
    ("spo", {"spo_steps": 25, "spo_guidance": 6.0, "spo_beta": 12.0, "spo_scorer": "preference_helpers:brightness"},
     {"steps": 25, "guidance": 6.0, "beta": 12.0, "scorer": "preference_helpers:brightness"}),
])
def test_resume_reads_the_one_bag_method_section_of_an_older_run(name, old, new, tmp_path, caplog, monkeypatch):
    """`agsm train --resume RUN` on a run written before each method had its own options: the named method's old
    prefixed options are read under their new names, the other methods' dropped, all in one warning."""
    import agsm.training.loop as train_module

    run = _old_run(tmp_path / "run", name=name, **old)
    seen = {}
    monkeypatch.setattr(train_module, "train", lambda config, **kw: seen.setdefault("config", config))
    with caplog.at_level(logging.WARNING, logger="agsm.config"):
        main(["train", "--resume", str(run)])
    method = seen["config"].method
    assert type(method) is get_method(name).options
    assert method == get_method(name).options(**new)  # every other option at the method's own default
    warnings = [r.getMessage() for r in caplog.records if r.name == "agsm.config"]
    assert len(warnings) == 1, warnings
    assert "dropped method." in warnings[0] and f"this run's method is {name}" in warnings[0]
    for old_name, new_name in (("softrepa_temperature", "temperature"), ("dpo_beta", "beta"), ("spo_steps", "steps")):
        renamed = f"method.{old_name} is deprecated: it is now called method.{new_name}"
        assert (renamed in warnings[0]) == (old_name in old or (name, old_name) in {("inpo", "dpo_beta")}), renamed
    # the run folder's own check (training/run_folder.py) reads the saved file the same way
    assert config_module.from_dict(__import__("yaml").safe_load((run / "config.yaml").read_text())).method == method


def test_an_old_softrepa_run_does_not_take_agsms_temperature(tmp_path):
    run = _old_run(tmp_path / "run", name="softrepa")  # its bag holds agsm's temperature 0.1 beside softrepa's 0.07
    assert load_config(run / "config.yaml").method.temperature == 0.07


def test_an_option_of_another_method_names_its_owner():
    with pytest.raises(ValueError, match=r"method.gamma_neg is an option of agsm, not of softrepa; valid softrepa "
                                         r"options: \[.*'scale'"):
        load_config(None, ["--method.name", "softrepa", "--method.gamma_neg", "0"])
    with pytest.raises(ValueError, match="method.diagonal_weight is an option of softrepa, not of agsm"):
        load_config(None, ["--method.diagonal_weight", "10"])
    with pytest.raises(ValueError, match="method.beta is an option of dpo, inpo and spo, not of agsm"):
        load_config(None, ["--method.beta", "10"])
    with pytest.raises(ValueError, match=r"unknown options \['method.tempreature'\]; valid method options of "
                                         r"softrepa: \[.*'temperature'"):
        load_config(None, ["--method.name", "softrepa", "--method.tempreature", "0.1"])
    with pytest.raises(ValueError, match="method.divert_start 20 must be in \\[0, steps 20\\)"):
        load_config(None, ["--method.name", "spo", "--method.divert_start", "20"])


def test_each_method_keeps_todays_defaults():
    assert (load_config(None, []).method.temperature, load_config(None, []).method.ema_decay) == (0.1, 0.9999)
    softrepa = load_config(None, ["--method.name", "softrepa"]).method
    assert (softrepa.temperature, softrepa.scale, softrepa.diagonal_weight) == (0.07, 4.0, 0.0)
    assert load_config(None, ["--method.name", "dpo"]).method.beta == 5000.0
    assert load_config(None, ["--method.name", "inpo"]).method.beta == 5000.0
    spo = load_config(None, ["--method.name", "spo"]).method
    assert (spo.steps, spo.beta, spo.clip, spo.scorer) == (20, 10.0, 0.1, "shapes_judge")
    assert load_config(None, ["--method.name", "dsm"]).to_dict()["method"] == {
        "name": "dsm", "noise_sharing": "image", "hard_negatives": 0.0,
        "hard_negative_kinds": ["color", "shape", "count", "relation"], "bradley_terry": False, "ema_decay": 0.9999,
        "ema_init": "copy"}


def test_another_method_on_the_command_line_keeps_only_the_shared_options_of_the_file(caplog):
    with caplog.at_level(logging.WARNING, logger="agsm.config"):
        config = load_config("sd15", ["--method.name", "softrepa"])
    # sd15's ema_init / ema_decay are the token family's: softrepa has them; agsm's temperature is not softrepa's
    assert config.method.ema_init == "independent" and config.method.temperature == 0.07
    assert "method.gamma_neg, method.gamma_pos, method.temperature are not options of softrepa" in caplog.text
    assert load_config("sd15-dpo", ["--method.name", "inpo"]).method.beta == 5000.0  # InPO's beta is DPO's
