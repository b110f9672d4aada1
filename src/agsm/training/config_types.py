"""Config values checked against the dataclass field types, before any model loads.

YAML 1.1 (PyYAML) reads `1e-3` as a string and the command line hands over whatever YAML makes of a word,
so values are coerced where the meaning is certain (the string '1e-3' for a float, 3.0 for an int) and refused
otherwise (2.7 for an int, 'two' for an int, a list where a number belongs), with the option, the value and
the expected type in the message.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing


def coerce_section(section: str, cls, values) -> dict:
    """The raw options of one config section, each converted to its field's declared type."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config section {section!r} must be a mapping of options, got {type(values).__name__} "
                         f"{values!r}; write it as '{section}:' followed by indented 'option: value' lines")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    return {k: coerce(f"{section}.{k}", v, hints[k]) if k in fields else v for k, v in values.items()}


def coerce(name: str, value, declared):
    """`value` as the type `declared` (int, float, bool, str, list[str], or X | None); ValueError if it is not."""
    if typing.get_origin(declared) in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(declared) if t is not type(None)]
        if value is None:
            return None
        return coerce(name, value, options[0])
    if typing.get_origin(declared) is list:
        (item,) = typing.get_args(declared)
        if isinstance(value, str):  # --tokens.stages down,mid
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            _refuse(name, value, f"a list of {item.__name__}")
        return [coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    return _SCALARS[declared](name, value)


def _as_float(name, value):
    if isinstance(value, bool):
        _refuse(name, value, "a number")
    number = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        _refuse(name, value, "a number (e.g. 0.001 or 1e-3)")
    # YAML reads .nan / .inf and float() reads 'nan' / 'inf': no option means anything with them, and a NaN passes
    # every range check (each comparison is False), so it is refused here, for every float option at once
    if not math.isfinite(number):
        _refuse(name, value, "a finite number")
    return number


def _as_int(name, value):
    if isinstance(value, bool):
        _refuse(name, value, "a whole number")
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            _refuse(name, value, "a whole number")
    if isinstance(number, float) and number.is_integer():
        return int(number)
    _refuse(name, value, "a whole number (an int)")


def _as_bool(name, value):
    if isinstance(value, bool):
        return value
    _refuse(name, value, "true or false")


def _as_str(name, value):
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        # YAML 1.1 reads a bare no / yes (and off / on) as a bool, so `--train.mixed_precision no` arrives as False;
        # 'no' / 'yes' is what the user typed in the usual case, and the option's own check names what is allowed
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)  # a path or name that YAML read as a number
    _refuse(name, value, "a string")


_SCALARS = {float: _as_float, int: _as_int, bool: _as_bool, str: _as_str}


def _refuse(name: str, value, expected: str) -> typing.NoReturn:
    raise ValueError(f"option {name} = {value!r} ({type(value).__name__}) is not {expected}; "
                     f"give {name} {expected}")
