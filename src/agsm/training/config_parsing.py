"""Reading a run's configuration: YAML files (shipped or given), `--section.option value` overrides, old option
names, diffusers' names of the common options (DIFFUSERS_ALIASES), the `method` section (its options are those of the
method it names: objectives/registry.py), the "did you mean" lead of an unknown option's error, and the option table
`agsm train -h` prints. The dataclasses themselves live in training/config.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import logging
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from ..objectives import MethodOptions, get_method, method_names
from .config_help import listed
from .config_types import coerce, coerce_section
from .option_names import (DIFFUSERS_ALIASES, FLAG_ALIASES, FLAT_METHOD_OPTIONS, RENAMED_OPTIONS, alias_target,
                           did_you_mean, option_candidates, unknown_options_hint)

log = logging.getLogger("agsm.config")
# The configs shipped in the wheel (package data), reachable by name: `agsm train --config sd15`.
SHIPPED_CONFIGS = importlib.resources.files("agsm") / "configs"
DEFAULT_METHOD = "agsm"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def unknown_sections_hint(bad, sections, raw: dict | None = None) -> str:
    """The 'did you mean' lead of an unknown-sections error: `trian` -> train (trian.steps -> train.steps when `raw`,
    the config's nested dicts, shows the options under it); a top-level `learing_rate` -> train.lr (the section-less
    names a YAML file may use are the diffusers aliases)."""
    candidates = {name: name for name in sections}
    candidates.update(DIFFUSERS_ALIASES)
    hints = []
    for name in bad:
        close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
        options = (raw or {}).get(name)
        if close and close[0] in sections and isinstance(options, dict) and options:
            # trian.stpes: both halves may be misspelt, so each option is matched against the section's own
            section, valid = close[0], _section_options(close[0])
            for key in map(str, options):
                fixed = "" if key in valid else did_you_mean(f"{name}.{key}", option_candidates(section, valid))
                hints.append(fixed or f"{name}.{key}: did you mean {section}.{key}? ")
        else:
            hints.append(did_you_mean(name, candidates))
    return "".join(hints)


def _section_options(section: str) -> set[str]:
    """The option names of a config section; for `method`, those of every method (which one is meant is unknown)."""
    from .config import Config

    if section == "method":
        return _own_names()
    return {f.name for f in dataclasses.fields({s.name: s.default_factory for s in dataclasses.fields(Config)}
                                               [section])}


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
        _check(not owners, f"method.{bad} is an option of {listed(owners)}, not of {name}; valid {name} "
               f"options: {sorted(valid)}")
    bad = sorted(set(values) - set(valid))
    _check(not bad, f"{unknown_options_hint('method', bad, valid)}unknown options {[f'method.{b}' for b in bad]}; "
           f"valid method options of {name}: {sorted(valid)}")
    return cls(**values)


def parse_overrides(args: list[str]) -> dict:
    """['--train.steps', '10', '--method.gamma_neg=0.1'] -> {'train': {'steps': 10}, 'method': {...}}; the diffusers
    names (--learning_rate 1e-4, DIFFUSERS_ALIASES) are read as the options they stand for."""
    out: dict = {}
    spelled: dict[str, str] = {}  # 'train.lr' -> how the command line named it, to refuse two spellings of one option
    items = list(args)
    while items:
        key = items.pop(0)
        _check(key.startswith("--"), f"expected an option like --train.steps, got {key!r}")
        key, equals, value = key[2:].partition("=")
        if not equals and _bare_switch(key, items):
            value = "true"
        elif not equals:
            _check(bool(items), f"option --{key} needs a value")
            value = items.pop(0)
        target = alias_target(key) if "." not in key else None
        section, _, option = (target or key).partition(".")
        _check(bool(option), f"{_flat_hint(key)}option --{key} must be written --section.option, e.g. --train.steps")
        full = f"{section}.{option.replace('-', '_')}"
        previous = spelled.setdefault(full, f"--{key}")
        # the same spelling twice is an override of an override (the last wins, as before); two spellings of one
        # option are most likely a carried-over diffusers flag beside agsm's own, and which was meant is unclear
        _check(previous == f"--{key}" or (target is None and alias_target(previous[2:]) is None),
               f"{previous} and --{key} both set {full}; give one of them")
        out.setdefault(section, {})[option.replace("-", "_")] = _yaml_value(value)
    return out


def _bare_switch(key: str, rest: list[str]) -> bool:
    """True for a diffusers switch given bare (--random_flip, then another option or nothing), not with a value."""
    return key.replace("-", "_") in FLAG_ALIASES and not (rest and isinstance(_yaml_value(rest[0]), bool))


def _flat_hint(key: str) -> str:
    """The 'did you mean' lead for a section-less option that is no alias: --steps -> --train.steps (an option of
    that name in any section), --learing_rate -> --learning_rate."""
    from .config import Config

    candidates = {alias: f"--{alias}" for alias in DIFFUSERS_ALIASES}
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory):
            candidates.setdefault(f.name, f"--{section.name}.{f.name}")
    exact = [f"--{s.name}.{key}" for s in dataclasses.fields(Config)
             if key.replace("-", "_") in {f.name for f in dataclasses.fields(s.default_factory)}]
    if exact:
        return f"--{key}: did you mean {' or '.join(exact)}? "
    return did_you_mean(f"--{key}", candidates)


def apply_aliases(raw: dict, source: str) -> dict:
    """A config file's top-level diffusers names (learning_rate: 1e-4) moved to the options they stand for; one given
    beside its agsm name (train: lr: ...) is refused, naming both. `source`: the file, for the message."""
    out = dict(raw)
    for key in [k for k in raw if isinstance(k, str) and k not in _section_names() and alias_target(k)]:
        section, _, option = alias_target(key).partition(".")
        values = out.get(section)
        values = dict(values) if isinstance(values, dict) else values
        if values is None:
            values = {}
        _check(isinstance(values, dict), f"config section {section!r} in {source} must be a mapping of options")
        _check(option not in values, f"{source} sets both {key} (diffusers' name of {section}.{option}) and "
               f"{section}.{option}; give one of them")
        values[option] = out.pop(key)
        out[section] = values
    return out


def _section_names() -> set[str]:
    from .config import Config

    return {f.name for f in dataclasses.fields(Config)}


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
    return _apply_renames(apply_aliases(raw, str(path)))


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
