"""Config errors that point to the fix (issue 27 item 4): every numeric option range-checked when the config is built
(before any model loads), NaN and inf refused by name, "did you mean" for a misspelt option or section, and the
diffusers training scripts' option names read as agsm's. Over 300 lines: the bad values of every option stay in
one table here, so a new option without a check fails in one place."""
import dataclasses
import re
import typing

import pytest

from agsm.cli import build_parser, main
from agsm.objectives import get_method, method_names
from agsm.training.config import Config, load_config, shipped_configs
from agsm.training.option_names import DIFFUSERS_ALIASES, FLAG_ALIASES

# A value each numeric option must refuse (naming the option, the value and what is allowed). A numeric field added
# without a check and an entry here fails test_each_numeric_option_refuses_a_value_out_of_range.
OUT_OF_RANGE = {
    "model.resolution": [4], "model.timestep_shift": [0, -1.0], "model.logit_std": [0, -0.5],
    "data.min_size": [-1], "data.max_images": [0],
    "tokens.num_tokens": [0], "tokens.blocks": [0], "tokens.init_std": [-0.01], "tokens.num_buckets": [0],
    "tokens.time_init_std": [-0.01],
    "tune.lora_rank": [0], "tune.lora_alpha": [0, -4.0],
    "train.steps": [0], "train.images_per_step": [1], "train.gradient_accumulation_steps": [0, -2],
    "train.lr": [-0.001, -1], "train.weight_decay": [-0.0001],
    "train.restart_every": [0], "train.min_lr": [-1e-05, 0.5], "train.lr_warmup_steps": [-1],
    "train.checkpoint_every": [0], "train.checkpoints_total_limit": [0], "train.log_every": [0],
    "train.seed": [-1, 2**32], "train.max_bad_steps": [-1], "train.validation_every": [0],
    "train.num_validation_images": [0], "train.validation_seed": [-1, 2**32], "train.validation_steps": [0],
    "train.validation_guidance": [-1.0], "train.max_grad_norm": [0, -1.0],
    # the method section: by option name, checked for every method that has the option
    "method.hard_negatives": [-0.1, 1.5], "method.ema_decay": [1, -0.1], "method.gamma_pos": [-1.0],
    "method.gamma_neg": [-1.0], "method.temperature": [0, -0.1], "method.ema_step": [0], "method.beta": [0, -1.0],
    "method.inversion_steps": [0], "method.inversion_eta": [-0.1], "method.scale": [0, -4.0],
    "method.diagonal_weight": [-1.0], "method.steps": [0], "method.eta": [0], "method.guidance": [-1.0],
    "method.candidates": [1], "method.divert_start": [-1, 20], "method.threshold": [-0.1, 1], "method.clip": [0, 1],
}
# Numeric options any finite value suits: only NaN and inf are refused (test_non_finite_...).
ANY_FINITE = {
    "model.logit_mean": "the logit-normal draw's mean: any real number",
    "model.lora_scale": "a LoRA's scale: negative scales subtract it, and diffusers takes any",
}
RANGE_WORDS = re.compile(r">=|>|<=|<|in [\[(]")


def _numeric(declared) -> type | None:
    """int or float for a numeric field type (also X | None); None for anything else (bool is no number here)."""
    args = [a for a in typing.get_args(declared) if a is not type(None)] or [declared]
    return args[0] if len(args) == 1 and args[0] in (int, float) else None


def numeric_options() -> list[tuple[str, str | None, type]]:
    """(option, method or None, int | float) for every numeric field of every section and every method's options."""
    found = []
    for section in dataclasses.fields(Config):
        if section.name == "method":
            for name in method_names():
                cls = get_method(name).options
                hints = typing.get_type_hints(cls)
                found += [(f"method.{f.name}", name, kind) for f in dataclasses.fields(cls)
                          if (kind := _numeric(hints[f.name]))]
        else:
            hints = typing.get_type_hints(section.default_factory)
            found += [(f"{section.name}.{f.name}", None, kind) for f in dataclasses.fields(section.default_factory)
                      if (kind := _numeric(hints[f.name]))]
    return found


def _overrides(option: str, method: str | None, value) -> list[str]:
    return (["--method.name", method] if method else []) + [f"--{option}", str(value)]


def _refused(overrides: list[str]) -> str:
    with pytest.raises(ValueError) as exc:
        load_config(None, overrides)
    return str(exc.value)


@pytest.mark.parametrize("option,method,kind", numeric_options(),
                         ids=[f"{m or ''}:{o}" for o, m, _ in numeric_options()])
def test_each_numeric_option_refuses_a_value_out_of_range(option, method, kind):
    if option in ANY_FINITE:
        assert option not in OUT_OF_RANGE
        return
    if option not in OUT_OF_RANGE:
        pytest.fail(f"{option} ({kind.__name__}) has no range check test: check its range in its dataclass's "
                    "__post_init__ (option, value and allowed range in the message) and add a value it refuses to "
                    "OUT_OF_RANGE (or, when every finite value is fine, say why in ANY_FINITE)")
    for bad in OUT_OF_RANGE[option]:
        message = _refused(_overrides(option, method, kind(bad)))
        assert option in message and str(kind(bad)) in message, (bad, message)
        assert RANGE_WORDS.search(message), message  # says what is allowed


@pytest.mark.parametrize("option,method,kind", numeric_options(),
                         ids=[f"{m or ''}:{o}" for o, m, _ in numeric_options()])
def test_non_finite_values_are_refused_by_name(option, method, kind, tmp_path):
    for text in ("nan", "inf", "-inf", ".nan", "-.inf"):
        message = _refused(_overrides(option, method, text))
        assert option in message and ("finite" in message or "whole number" in message), message
    section, _, name = option.partition(".")
    config = tmp_path / "nan.yaml"
    method_line = f"  name: {method}\n" if method else ""
    config.write_text(f"{section}:\n{method_line if section == 'method' else ''}  {name}: .nan\n")
    with pytest.raises(ValueError, match=re.escape(option)):
        load_config(config)


def test_the_range_tables_name_only_real_options():
    options = {o for o, _, _ in numeric_options()}
    assert set(OUT_OF_RANGE) | set(ANY_FINITE) <= options


def test_a_nan_from_the_command_line_names_the_option_and_the_fix():
    assert _refused(["--train.lr", "nan"]) == ("option train.lr = 'nan' (str) is not a finite number; give train.lr a "
                                               "finite number")


def _script_overrides() -> list[list[str]]:
    """The settings scripts/run_study.sh and scripts/run_preference_study.sh pass (--set / --section.option)."""
    official = ["--tokens.init", "empty_prompt", "--method.ema_init", "independent", "--method.ema_decay", "0.9999",
                "--train.min_lr", "1e-5", "--train.restart_every", "10000"]
    common = ["--model.resolution", "null", "--data.cache_text", "true", "--train.mixed_precision", "no",
              "--train.gradient_checkpointing", "false", "--tune.params", "lora", "--tune.lora_rank", "8",
              "--tune.export_pipeline", "true", "--train.log_every", "25", "--train.seed", "2",
              "--train.checkpoint_every", "100"]
    return [
        official, ["--method.hard_negatives", "0.67"], ["--method.hard_negatives", "1.0"],
        ["--method.gamma_neg", "0"], ["--method.bradley_terry", "true"], ["--method.reward_space", "velocity"],
        ["--method.name", "dsm", "--tokens.init", "empty_prompt", "--train.min_lr", "1e-5",
         "--train.restart_every", "10000"],
        ["--method.name", "softrepa", "--method.hard_negatives", "0.67"],
        ["--method.hard_negatives", "0.67", "--train.lr", "0.01"],
        ["--method.hard_negatives", "0.67", "--tokens.stages", "[down,mid,up]"],
        ["--method.shared_tokens", "true"],
        ["--method.name", "softrepa", "--train.min_lr", "1e-5", "--train.restart_every", "10000",
         "--tokens.time_table", "per_block", "--tokens.time_init_std", "0.02"],
        ["--method.ema_at", "x_t", "--tokens.time_table", "per_block", "--tokens.time_init_std", "0.02", *official],
        ["--config", "sd15-dpo", *common, "--train.steps", "500", "--train.images_per_step", "2", "--train.lr", "1e-4",
         "--method.beta", "5000"],
        ["--config", "sd15-inpo", *common, "--train.steps", "200", "--train.images_per_step", "8", "--train.lr",
         "1e-4", "--method.beta", "2000"],
        ["--config", "sd15-spo", *common, "--train.steps", "200", "--train.images_per_step", "2", "--train.lr",
         "1e-4", "--method.steps", "25", "--method.guidance", "6", "--method.divert_start", "4",
         "--method.scorer", "shapes_judge", "--data.format", "pairs", "--data.caption_column", "caption"],
    ]


def test_the_defaults_the_shipped_configs_and_the_scripts_settings_still_build():
    assert load_config(None) == Config()
    for name in shipped_configs():
        load_config(name)
    for overrides in _script_overrides():
        config, rest = (overrides[1], overrides[2:]) if overrides[0] == "--config" else (None, overrides)
        load_config(config, rest)


# --- did you mean

@pytest.mark.parametrize("overrides,suggested", [
    (["--train.learing_rate", "1e-4"], "train.learing_rate: did you mean train.lr?"),
    (["--train.learning_rate", "1e-4"], "train.learning_rate: did you mean train.lr?"),
    (["--train.stpes", "5"], "train.stpes: did you mean train.steps?"),
    (["--trian.steps", "5"], "trian.steps: did you mean train.steps?"),
    (["--trian.stpes", "5"], "trian.stpes: did you mean train.steps?"),
    (["--method.temprature", "0.2"], "method.temprature: did you mean method.temperature?"),
    (["--tokens.num_token", "2"], "tokens.num_token: did you mean tokens.num_tokens?"),
    (["--learing_rate", "1e-4"], "--learing_rate: did you mean --learning_rate?"),
    (["--steps", "4"], "--steps: did you mean --train.steps?"),
])
def test_an_unknown_option_on_the_command_line_gets_the_closest_names(overrides, suggested):
    message = _refused(overrides)
    assert re.match(re.escape(suggested[:-1]) + r"[? ]", message), message  # the closest first (others may follow)


@pytest.mark.parametrize("text,suggested", [
    ("train:\n  learing_rate: 1e-4\n", "train.learing_rate: did you mean train.lr?"),
    ("trian:\n  steps: 3\n", "trian.steps: did you mean train.steps?"),
    ("metod:\n  temprature: 0.1\n", "metod.temprature: did you mean method.temperature?"),
    ("learing_rate: 1e-4\n", "learing_rate: did you mean train.lr?"),
])
def test_a_misspelt_key_in_a_yaml_file_gets_the_closest_names(text, suggested, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(text)
    with pytest.raises(ValueError) as exc:
        load_config(config)
    assert str(exc.value).startswith(suggested), exc.value


def test_a_name_close_to_nothing_gets_no_suggestion():
    message = _refused(["--train.zzzzzz", "1"])
    assert "did you mean" not in message and message.startswith("unknown options ['train.zzzzzz']")


# --- diffusers' option names

def test_every_alias_names_a_real_option():
    sections = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "method"}
    for alias, target in DIFFUSERS_ALIASES.items():
        section, _, option = target.partition(".")
        assert option in {f.name for f in dataclasses.fields(sections[section])}, alias
    assert FLAG_ALIASES <= set(DIFFUSERS_ALIASES)


def test_the_diffusers_names_asked_for_are_aliases():
    assert {"learning_rate": "train.lr", "max_train_steps": "train.steps", "train_batch_size": "train.images_per_step",
            "pretrained_model_name_or_path": "model.path", "output_dir": "train.output_dir",
            "resolution": "model.resolution", "mixed_precision": "train.mixed_precision",
            "seed": "train.seed"}.items() <= DIFFUSERS_ALIASES.items()


def test_no_alias_is_or_abbreviates_a_flag_of_agsm_train():
    """argparse takes a prefix of a flag as the flag (--res for --resume): an alias must be neither, or `agsm train`
    would swallow it before the config sees it."""
    for alias in DIFFUSERS_ALIASES:
        for spelling in (f"--{alias}", f"--{alias.replace('_', '-')}"):
            args, extra = build_parser().parse_known_args(["train", spelling, "1"])
            assert extra == [spelling, "1"], spelling


DIFFUSERS_LINE = ["--pretrained_model_name_or_path", "/models/sd15", "--resolution", "64", "--output_dir", "/runs/x",
                  "--learning_rate", "2e-4", "--max_train_steps", "7", "--train_batch_size", "3",
                  "--mixed_precision", "bf16", "--seed", "5"]


def _diffusers_config_matches(config):
    assert (config.model.path, config.model.resolution, config.train.output_dir) == ("/models/sd15", 64, "/runs/x")
    assert (config.train.lr, config.train.steps, config.train.images_per_step) == (2e-4, 7, 3)
    assert (config.train.mixed_precision, config.train.seed) == ("bf16", 5)


def test_diffusers_names_on_the_command_line_with_underscores_or_dashes():
    _diffusers_config_matches(load_config(None, DIFFUSERS_LINE))
    dashed = [a.replace("_", "-") if a.startswith("--") else a for a in DIFFUSERS_LINE]
    _diffusers_config_matches(load_config(None, dashed))
    _diffusers_config_matches(load_config(None, [f"{a}={b}" for a, b in zip(DIFFUSERS_LINE[::2],
                                                                            DIFFUSERS_LINE[1::2])]))


def test_diffusers_switches_need_no_value():
    config = load_config(None, ["--random_flip", "--gradient_checkpointing", "--seed", "3"])
    assert config.data.random_flip and config.train.gradient_checkpointing and config.train.seed == 3
    assert load_config(None, ["--random-flip"]).data.random_flip
    assert not load_config(None, ["--random_flip", "false"]).data.random_flip


def test_diffusers_names_as_top_level_keys_of_a_yaml_file(tmp_path):
    config = tmp_path / "diffusers.yaml"
    config.write_text("".join(f"{a[2:]}: {b}\n" for a, b in zip(DIFFUSERS_LINE[::2], DIFFUSERS_LINE[1::2])))
    _diffusers_config_matches(load_config(config))
    config.write_text("learning_rate: 2e-4\nmax_train_steps: 7\ntrain:\n  images_per_step: 3\n")
    loaded = load_config(config)
    assert (loaded.train.lr, loaded.train.steps, loaded.train.images_per_step) == (2e-4, 7, 3)


@pytest.mark.parametrize("overrides,names", [
    (["--learning_rate", "1e-4", "--train.lr", "1e-3"], ("--learning_rate", "--train.lr")),
    (["--train.steps", "5", "--max-train-steps", "7"], ("--train.steps", "--max-train-steps")),
    (["--seed", "1", "--seed=2", "--train.seed", "3"], ("--seed", "--train.seed")),
])
def test_an_alias_beside_its_agsm_name_is_an_error_naming_both(overrides, names):
    message = _refused(overrides)
    assert all(name in message for name in names) and "give one of them" in message, message


def test_an_alias_beside_its_agsm_name_in_a_yaml_file_is_an_error_naming_both(tmp_path):
    config = tmp_path / "both.yaml"
    config.write_text("learning_rate: 1e-4\ntrain:\n  lr: 1e-3\n")
    with pytest.raises(ValueError, match=r"both learning_rate .* and train\.lr; give one of them"):
        load_config(config)


def test_repeating_one_spelling_still_overrides():
    assert load_config(None, ["--seed", "1", "--seed", "2"]).train.seed == 2
    assert load_config(None, ["--train.steps", "5", "--train.steps", "6"]).train.steps == 6


def test_train_help_lists_the_aliases(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    section = flat[flat.index("diffusers option names"):]
    for alias, target in DIFFUSERS_ALIASES.items():
        assert f"--{alias} = --{target}" in section, alias


def test_an_alias_run_reaches_training_as_its_config(tmp_path, monkeypatch):
    import agsm.training.loop as train_module

    seen = {}
    monkeypatch.setattr(train_module, "train", lambda config, **kw: seen.setdefault("config", config))
    main(["train", "--config", "sd15", *DIFFUSERS_LINE[:4], "--output_dir", str(tmp_path / "run"),
          *DIFFUSERS_LINE[6:]])
    config = seen["config"]
    assert (config.model.path, config.model.resolution, config.train.output_dir) == ("/models/sd15", 64,
                                                                                     str(tmp_path / "run"))
    assert (config.train.lr, config.train.steps, config.train.images_per_step, config.train.seed) == (2e-4, 7, 3, 5)
    assert config.tokens.init == "empty_prompt"  # the rest is the shipped config's


def test_an_alias_conflict_on_the_command_line_is_one_line_from_agsm_train(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--learning_rate", "1e-4", "--train.lr", "1e-3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("agsm train: --learning_rate and --train.lr both set train.lr")


def test_out_of_range_errors_come_before_any_model_loads(capsys):
    """A bad value is refused by `agsm train` itself, with a model path that does not exist."""
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model.path", "/nowhere", "--learning_rate", "-1"])
    assert exc.value.code == 2
    assert "train.lr -1.0 must be >= 0" in capsys.readouterr().err
