"""The base of agsm's expected failures: things a user can fix, reported as one line by the `agsm` command.

Bad input also arrives as ValueError or FileNotFoundError (the data layer's DataError is a ValueError); the
classes here cover expected failures that are neither, such as a full disk or a diverged run. Every message
names the value or file at fault and what to do about it.
"""
from __future__ import annotations


class AgsmError(Exception):
    """An expected failure; the CLI prints `agsm <command>: <message>` and exits with status 2."""
