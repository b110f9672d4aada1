"""The option table `agsm train -h` prints, from the config dataclasses' fields and their help metadata, so every
option is documented exactly once (training/config.py); the method section is method.name, then one group per
registered method with that method's own options.
"""
from __future__ import annotations

import dataclasses
import typing

from ..objectives import get_method, method_names


def listed(names: list[str]) -> str:
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
