"""JSON from untrusted files, parsed with limits: size, nesting depth and number length.

Python's `json` recurses once per nesting level (100k `[` give a RecursionError), converts a
5000-digit integer into a ValueError. Every file a user hands us
(checkpoint metadata, aggregators, GeoJSON, NCRF, a scan request) goes through `parse_json`
instead, so each of those becomes one `ValueError` line that the caller turns into its own error
class, before anything is built from the document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pcam_scan.wording import count_noun

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


@dataclass(frozen=True)
class JsonLimits:
    """What a well-formed file of ours never exceeds."""

    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = 64
    max_number_chars: int = 40


DEFAULT_LIMITS = JsonLimits()


class JsonLimitError(ValueError):
    """The text is not JSON, or exceeds a limit; `str(err)` is one line."""


def parse_json(data: str | bytes, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """The decoded document; JsonLimitError when malformed, too big, too deep, or when a number
    is too long. Whether a value is finite or in range is the schema's check, which can name the
    field."""
    if len(data) > limits.max_bytes:
        raise JsonLimitError(f"JSON of {count_noun(len(data), 'byte')} exceeds the limit of {limits.max_bytes}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise JsonLimitError("not UTF-8 text") from None
    else:
        text = data
    depth = nesting_depth(text)
    if depth > limits.max_depth:
        raise JsonLimitError(f"JSON nested {depth} deep exceeds the limit of {limits.max_depth}")
    try:
        return json.loads(
            text,
            parse_int=lambda raw: int(_short(raw, limits)),
            parse_float=lambda raw: float(_short(raw, limits)),
        )
    except json.JSONDecodeError as err:
        raise JsonLimitError(f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, counted without recursion (strings skipped)."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _short(raw: str, limits: JsonLimits) -> str:
    if len(raw) > limits.max_number_chars:
        raise JsonLimitError(
            f"a JSON number of {count_noun(len(raw), 'character')} exceeds the limit of {limits.max_number_chars}"
        )
    return raw
