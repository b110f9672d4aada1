"""Reading a run's configuration: YAML files (shipped or given), `--section.option value` overrides, old option
names, the `method` section (its options are those of the method it names: objectives/registry.py), and the option
table `agsm train -h` prints. The dataclasses themselves live in training/config.py.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import typing
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from ..objectives import MethodOptions, get_method, method_names
from .config_types import coerce, coerce_section

log = logging.getLogger("agsm.config")
# The configs shipped in the wheel (package data), reachable by name: `agsm train --config sd15`.
SHIPPED_CONFIGS = importlib.resources.files("agsm") / "configs"
DEFAULT_METHOD = "agsm"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# Old option names still read (with a warning), because the config.yaml of earlier runs holds them:
# (section, old name) -> new name. In the method section a name may be one method's: (method.<name>, old name).
RENAMED_OPTIONS = {
    ("train", "keep_checkpoints"): "checkpoints_total_limit",
    ("method.softrepa", "softrepa_temperature"): "temperature",
    ("method.softrepa", "softrepa_scale"): "scale",
    ("method.dpo", "dpo_beta"): "beta",
    ("method.inpo", "dpo_beta"): "beta",
    ("method.inpo", "inpo_inversion_steps"): "inversion_steps",
    ("method.inpo", "inpo_inversion_eta"): "inversion_eta",
    ("method.inpo", "inpo_invert_with"): "invert_with",
    **{("method.spo", f"spo_{option}"): option for option in ("steps", "eta", "guidance", "candidates",
                                                              "divert_start", "threshold", "beta", "clip", "scorer")},
}
# Before each method had its own options (issue 25), the method section was one bag of every method's options, and a
# run's config.yaml holds all of them: only the named method's are read from such a section, the others dropped.
FLAT_METHOD_OPTIONS = frozenset({
    "name", "gamma_pos", "gamma_neg", "temperature", "reward_space", "shared_tokens", "bradley_terry", "ema_decay",
    "ema_init", "hard_negatives", "hard_negative_kinds", "noise_sharing", "ema_at", "ema_step", "diagonal_weight",
    *(old for (section, old) in RENAMED_OPTIONS if section.startswith("method."))})


def method_name_of(raw: dict) -> str:
    """The method a config (nested dicts) names: method.name, or agsm when it names none."""
    section = raw.get("method")
    name = section.get("name", DEFAULT_METHOD) if isinstance(section, dict) else DEFAULT_METHOD
    return coerce("method.name", name, str)


def _apply_renames(raw: dict, method: str | None = None) -> dict:
    """`raw` with deprecated option names replaced by their new names (and, in a method section of the old one-bag
    layout, the other methods' options dropped), all logged as one warning. `method`: whose renames the method section
    takes (default: the method `raw` names; overrides pass the run's, since they rarely repeat method.name)."""
    out = dict(raw)
    method = method or method_name_of(raw)
    renamed, dropped = [], []
    values = out.get("method")
    if isinstance(values, dict) and method in method_names() and set(values) & (FLAT_METHOD_OPTIONS - _own_names()):
        renames = {old: new for (section, old), new in RENAMED_OPTIONS.items() if section == f"method.{method}"}
        own = ({f.name for f in dataclasses.fields(get_method(method).options)} - set(renames.values())) | set(renames)
        dropped = sorted(k for k in values if k in FLAT_METHOD_OPTIONS and k not in own)
        out["method"] = {k: v for k, v in values.items() if k not in dropped}
    for (section, old), new in RENAMED_OPTIONS.items():
        section, _, owner = section.partition(".")
        values = out.get(section)
        if not isinstance(values, dict) or old not in values or (owner and owner != method):
            continue
        _check(new not in values, f"{section}.{old} is the old name of {section}.{new}; give only {section}.{new}")
        values = dict(values)
        values[new] = values.pop(old)
        out[section] = values
        renamed.append(f"{section}.{old} is deprecated: it is now called {section}.{new} (read as that)")
    if dropped:
        renamed.append(f"dropped {', '.join(f'method.{k}' for k in dropped)} (the method section of an older version "
                       f"held every method's options; this run's method is {method})")
    if renamed:
        log.warning("config options of an older version: %s", "; ".join(renamed))
    return out


def _own_names() -> set[str]:
    """Every option name some registered method has today (so a new-layout section is never taken for an old one)."""
    return {f.name for name in method_names() for f in dataclasses.fields(get_method(name).options)}


def switch_method(file_section: dict, name: str) -> dict:
    """A config file's method section when an override names another method: the options the two methods share
    (declared by a common base, e.g. the token family's ema_decay) carry over, the rest are dropped with a warning."""
    old = get_method(method_name_of({"method": file_section})).options
    new = get_method(name).options
    kept = {k: v for k, v in file_section.items() if k != "name" and _shared(k, old, new)}
    dropped = sorted(set(file_section) - set(kept) - {"name"})
    if dropped:
        log.warning("method.name %s replaces the config file's %s: its options %s are not options of %s and are "
                    "dropped", name, file_section.get("name", DEFAULT_METHOD),
                    ", ".join(f"method.{k}" for k in dropped), name)
    return {**kept, "name": name}


def _shared(option: str, old: type, new: type) -> bool:
    """True when `option` is declared by a class both method options derive from (the same option, not a namesake)."""
    for cls in reversed(old.__mro__):
        if dataclasses.is_dataclass(cls) and option in {f.name for f in dataclasses.fields(cls)}:
            return issubclass(new, cls)
    return False


def method_options(raw_section) -> MethodOptions:
    """The options of the method `raw_section` names (agsm by default), every value checked against its type; an
    option of another method says whose it is."""
    name = method_name_of({"method": raw_section})
    cls = get_method(name).options
    values = coerce_section("method", cls, raw_section)
    valid = [f.name for f in dataclasses.fields(cls)]
    for bad in sorted(set(values) - set(valid)):
        owners = [n for n in method_names() if bad in {f.name for f in dataclasses.fields(get_method(n).options)}]
        _check(not owners, f"method.{bad} is an option of {_listed(owners)}, not of {name}; valid {name} "
               f"options: {sorted(valid)}")
    bad = sorted(set(values) - set(valid))
    _check(not bad, f"unknown options {[f'method.{b}' for b in bad]}; valid method options of {name}: {sorted(valid)}")
    return cls(**values)


def _listed(names: list[str]) -> str:
    """'dpo, inpo and spo'."""
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


def option_help() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """[(section, its help, [('--section.option', TYPE, 'help (default: value)'), ...]), ...] from the dataclass
    fields' help metadata: what `agsm train -h` lists, so every option is documented exactly once. The method section
    is method.name, then one group per method ('method.name agsm', ...) with that method's own options."""
    from .config import Config

    table = []
    for section in dataclasses.fields(Config):
        if section.name != "method":
            table.append((section.name, section.metadata.get("help", ""), _options(section.name,
                                                                                   section.default_factory)))
            continue
        name_only = [o for o in _options("method", section.default_factory) if o[0] == "--method.name"]
        table.append(("method", section.metadata.get("help", ""), name_only))
        for name in method_names():
            spec = get_method(name)
            table.append((f"method.name {name}", spec.about,
                          [o for o in _options("method", spec.options) if o[0] != "--method.name"]))
    return table


def _options(section: str, cls) -> list[tuple[str, str, str]]:
    hints = typing.get_type_hints(cls)
    options = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        options.append((f"--{section}.{f.name}", _type_name(hints[f.name]),
                        f"{f.metadata.get('help', '')} (default: {_shown(default)})"))
    return options


def _type_name(declared) -> str:
    """INT, FLOAT, STR, BOOL, INT|NULL, LIST[STR]: the metavar `agsm train -h` shows for a field type."""
    if typing.get_origin(declared) is list:
        return f"LIST[{_type_name(typing.get_args(declared)[0])}]"
    args = [a for a in typing.get_args(declared) if a is not type(None)]
    if args and len(args) < len(typing.get_args(declared)):  # X | None
        return f"{_type_name(args[0])}|NULL"
    return declared.__name__.upper()


def _shown(value) -> str:
    """A default as one would write it in YAML or on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if value == "" else str(value)


def parse_overrides(args: list[str]) -> dict:
    """['--train.steps', '10', '--method.gamma_neg=0.1'] -> {'train': {'steps': 10}, 'method': {...}}."""
    out: dict = {}
    items = list(args)
    while items:
        key = items.pop(0)
        _check(key.startswith("--"), f"expected an option like --train.steps, got {key!r}")
        key, _, value = key[2:].partition("=")
        if not _:
            _check(bool(items), f"option --{key} needs a value")
            value = items.pop(0)
        section, _, option = key.partition(".")
        _check(bool(option), f"option --{key} must be written --section.option, e.g. --train.steps")
        out.setdefault(section, {})[option.replace("-", "_")] = _yaml_value(value)
    return out


def _yaml_value(text: str):
    """A command-line value as YAML reads it ('7' -> 7, 'true' -> True, '[down]' -> list); else the text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def shipped_configs() -> list[str]:
    """Names of the configs that ship in the package (agsm/configs/<name>.yaml), for `--config <name>`."""
    return sorted(p.name.removesuffix(".yaml") for p in SHIPPED_CONFIGS.iterdir() if p.name.endswith(".yaml"))


def resolve_config(name_or_path: str | Path) -> Traversable:
    """A config file: `name_or_path` if it is a file, else the shipped config of that name (sd15, sd3 ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    shipped = SHIPPED_CONFIGS / f"{text.removesuffix('.yaml')}.yaml"
    if "/" not in text and "\\" not in text and shipped.is_file():
        return shipped
    raise ValueError(f"config {text!r} is neither a file nor a shipped config; give a YAML file's path or one of "
                     f"the shipped names: {', '.join(shipped_configs())}")


def read_config_file(path: str | Path) -> dict:
    """The nested dicts of a config file (or a shipped config's name), its old option names renamed."""
    path = resolve_config(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
    _check(isinstance(raw, dict), f"config file {path} must hold a mapping of sections (model:, data:, "
           f"train: ...), not a {type(raw).__name__}")
    return _apply_renames(raw)


def merge_overrides(raw: dict, overrides: list[str] | dict | None) -> dict:
    """`raw` (a file's nested dicts) with the overrides on top. Old names are renamed per source, so an override of
    the new name wins over a file's old name; an override naming another method keeps only the shared options."""
    extra = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    file_method = method_name_of(raw) if isinstance(raw.get("method"), dict) else None
    extra = _apply_renames(extra, method_name_of(extra) if "name" in (extra.get("method") or {})
                           else file_method or DEFAULT_METHOD)
    named = extra.get("method", {}).get("name") if isinstance(extra.get("method"), dict) else None
    if file_method is not None and named is not None and named != file_method and named in method_names() \
            and file_method in method_names():
        raw = {**raw, "method": switch_method(raw["method"], named)}
    for section, values in extra.items():
        current = raw.setdefault(section, {})
        _check(isinstance(current, dict), f"config section {section!r} must be a mapping of options, got "
               f"{type(current).__name__} {current!r}")
        current.update(values)
    return raw
