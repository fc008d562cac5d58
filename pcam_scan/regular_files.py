"""Reading a file a user or another process can replace: regular files only, size known first.

A FIFO in place of a file blocks its reader forever, `/dev/zero` (or a symbolic link to it) never
ends, and a 300 MB file read whole before a 64 MiB limit is checked costs the memory the limit was
meant to save. So a file is opened without blocking (O_NONBLOCK: opening a FIFO with no writer
returns at once), checked with fstat on the open descriptor (no race with a rename in between),
and refused in one `IrregularFileError` line unless it is a regular file within the size limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pcam_scan.wording import count_noun


class IrregularFileError(ValueError):
    """The path is not a regular file, or it is over the size limit; `str(err)` is one line."""


def file_kind(mode: int) -> str:
    """What a file that is not regular is, for a message: "a FIFO", "a device", ..."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def _check(path: str | os.PathLike[str], info: os.stat_result, max_bytes: int | None) -> os.stat_result:
    if not stat.S_ISREG(info.st_mode):
        raise IrregularFileError(f"{path} is {file_kind(info.st_mode)}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise IrregularFileError(
            f"{path} is {count_noun(info.st_size, 'byte')}, over the limit of {count_noun(max_bytes, 'byte')}"
        )
    return info


def check_regular_file(path: str | os.PathLike[str], max_bytes: int | None = None) -> os.stat_result:
    """The stat of `path` (symbolic links followed) when it is a regular file within `max_bytes`;
    IrregularFileError otherwise. Never blocks: nothing is opened."""
    return _check(path, os.stat(path), max_bytes)


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, checked on the open descriptor
    before anything is read; IrregularFileError otherwise (OSError when it cannot be opened)."""
    fd = os.open(Path(path), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        _check(path, os.fstat(fd), max_bytes)
        data = file.read(max_bytes + 1)  # a file that grew since fstat is still bounded
    if len(data) > max_bytes:
        raise IrregularFileError(f"{path} grew beyond the limit of {count_noun(max_bytes, 'byte')} while read")
    return data
