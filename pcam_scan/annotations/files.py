"""File-level checks shared by the annotation readers and writers: a missing, unreadable or empty
file is one clear `AnnotationError`, and a written file appears whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pcam_scan.bounded_json import JsonLimitError
from pcam_scan.bounded_json import parse_json as bounded_parse_json
from pcam_scan.errors import AnnotationError
from pcam_scan.outputs import write_output_bytes

PathLike = str | os.PathLike[str]
MAX_ANNOTATION_BYTES = 256 * 1024 * 1024  # Camelyon16's largest XML is about 10 MB


def read_annotation_bytes(path: PathLike) -> bytes:
    """The file's bytes; missing, a folder, unreadable or empty -> AnnotationError."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"annotation file not found: {path}")
    if not path.is_file():
        raise AnnotationError(f"annotation path is not a file: {path}")
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise AnnotationError(
            f"annotation file {path} is {path.stat().st_size} bytes, over the limit of {MAX_ANNOTATION_BYTES}"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AnnotationError(f"cannot read annotation file {path}: {err.strerror}") from None
    if not data.strip():
        raise AnnotationError(f"annotation file is empty: {path}")
    return data


@contextmanager
def about_file(path: PathLike) -> Iterator[None]:
    """Prefix the file's path to an AnnotationError raised by a parser (which knows no path)."""
    try:
        yield
    except AnnotationError as err:
        raise AnnotationError(f"{path}: {err}") from None


def parse_json(data: bytes) -> Any:
    """Decoded JSON, within `bounded_json`'s limits; any problem -> AnnotationError."""
    try:
        return bounded_parse_json(data)
    except JsonLimitError as err:
        raise AnnotationError(str(err)) from None


def write_atomically(path: PathLike, data: bytes) -> None:
    """Write to a sibling temporary file, then rename: readers never see half a file, and a
    device, FIFO or symbolic link at `path` is refused (see pcam_scan.outputs). Whether an
    existing file may be replaced is the command's decision, checked before it starts."""
    write_output_bytes(Path(path), data, overwrite=True)
