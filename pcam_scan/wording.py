"""Counts in messages a person reads: "1 slide", "2 slides", never "1 slides"."""

from __future__ import annotations


def count_noun(count: int, singular: str, plural: str | None = None) -> str:
    """`count` with the noun in the number it needs ("1 lesion", "0 lesions", "3 patches")."""
    if count == 1:
        return f"1 {singular}"
    return f"{count} {plural or _plural(singular)}"


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"
