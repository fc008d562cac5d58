"""Slide ids: the names of the slide groups in a store.

A slide id becomes a Zarr group name, a file name on disk and a token in the viewer's URLs, so
only a small, safe alphabet is accepted: an ASCII letter or digit first, then letters, digits,
'.', '_' and '-', at most 128 characters. Ids are never sanitised silently: a file whose name
does not fit is refused with a message, and two files that would share an id are refused
together (case-insensitively, since stores may live on case-insensitive file systems).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from pcam_scan.errors import StoreError

SLIDE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_slide_id(slide_id: str) -> str:
    """Return `slide_id` unchanged, or raise StoreError saying why it cannot name a group."""
    if not isinstance(slide_id, str) or not SLIDE_ID_RE.match(slide_id):
        raise StoreError(
            f"slide id {slide_id!r} is not allowed: use 1-128 ASCII letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return slide_id


def slide_id_for_path(path: str | Path) -> str:
    """The slide id of a file: its name without the last suffix (tumor_001.tif -> tumor_001)."""
    stem = Path(path).stem
    try:
        return validate_slide_id(stem)
    except StoreError as err:
        raise StoreError(f"cannot derive a slide id from {str(path)!r}: {err}") from err


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two inputs name one file: local paths by realpath (not resolve: a symbolic-link
    loop resolves to itself here, and fails as its slide), URLs as written."""
    if isinstance(a, Path) and isinstance(b, Path):
        return os.path.realpath(a) == os.path.realpath(b)
    return str(a) == str(b)


def unique_slide_ids(paths: Iterable[str | Path]) -> dict[str, str | Path]:
    """Map each slide id to its file (a URL stays a string); refuse a batch in which two files
    would share an id."""
    by_id: dict[str, str | Path] = {}
    by_folded: dict[str, str | Path] = {}
    for raw in paths:
        path: str | Path = raw if isinstance(raw, str) and "://" in raw else Path(raw)
        if any(_same_file(path, seen) for seen in by_id.values()):
            continue  # the same file named twice (e.g. a folder and a file in it) is one slide
        slide_id = slide_id_for_path(path)
        folded = slide_id.casefold()
        if folded in by_folded:
            raise StoreError(
                f"slides {str(by_folded[folded])!r} and {str(path)!r} would both be stored as "
                f"slide id {slide_id!r}; rename one of them"
            )
        by_folded[folded] = path
        by_id[slide_id] = path
    return by_id
