"""Counts in messages: '1 image', '3 images', never '1 images'."""
from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """n and its noun in the right number; `plural` for nouns that do not just take an s."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
