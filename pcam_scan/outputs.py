"""Output files that never destroy data: no overwrite unless asked, no write through a special file,
and every file appears whole or not at all.

Every command that writes files (diagnose, evaluate, export, render, train, fit-aggregator, synth)
checks its targets here before it starts work, and writes them through `atomic_output`, the
project's one atomic write: a sibling temporary file, created exclusively under a random name (a
link planted at a guessable name is never written through), renamed into place. So an existing
result (a pathologist's ASAP XML, last week's diagnoses) survives unless `--overwrite` was given; a
device, FIFO or symbolic link given as an output is refused rather than replaced or written through;
and a run that fails leaves nothing.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.regular_files import file_kind

OVERWRITE_HINT = "pass --overwrite to replace it"


def check_output_file(path: Path, overwrite: bool) -> None:
    """Refuse a path that names anything but a new path, or (with `overwrite`) a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        _check_parent(path)
        _probe(path)
        return
    except OSError as err:
        raise ConfigError(f"cannot use {path} as an output: {err.strerror or err}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"{path} is a symbolic link; pcam-scan writes outputs only as regular files")
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} is a folder; give a file to write")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is {file_kind(info.st_mode)}, not a regular file; refusing to write it")
    if not overwrite:
        raise ConfigError(f"{path} exists; {OVERWRITE_HINT}")


def check_output_files(paths: Iterable[Path], overwrite: bool) -> None:
    """`check_output_file` for each path, naming every existing one in a single line."""
    existing: list[Path] = []
    for path in paths:
        check_output_file(path, overwrite=True)  # special files and bad parents
        if path.exists():
            existing.append(path)
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise ConfigError(f"{shown} exist{'s' if len(existing) == 1 else ''}; {OVERWRITE_HINT}")


def check_output_dir(path: Path) -> None:
    """A folder to write into: absent (it is created) or a folder; anything else is refused."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a folder")
    if not path.exists():
        _check_parent(path)


def make_output_dir(path: Path) -> list[Path]:
    """Create the output folder (and missing parents); returns the folders it created, deepest
    first (for `output_folder` to take back)."""
    check_output_dir(path)
    created = []
    ancestor = path
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
        created.append(ancestor)
        ancestor = ancestor.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {path}: {err.strerror or err}") from None
    return created


@contextmanager
def output_folder(path: Path) -> Iterator[Path]:
    """The output folder for the block; the folders this made are removed again when the block
    leaves them empty (a failure, a full disk, every slide damaged): no empty folder is left."""
    created = make_output_dir(path)
    try:
        yield path
    finally:
        for folder in created:
            try:
                folder.rmdir()  # only an empty folder goes
            except OSError:
                break


@contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` only when the block ends
    without an error (checked again then, so nothing created meanwhile is clobbered)."""
    check_output_file(path, overwrite)
    with output_folder(path.parent):
        try:
            tmp = exclusive_sibling(path, "tmp")
        except OSError as err:
            raise ConfigError(f"cannot write {path}: {err.strerror or err}") from None
        try:
            yield tmp
            check_output_file(path, overwrite)
            os.replace(tmp, path)
        except OSError as err:
            raise ConfigError(f"cannot write {path}: {err.strerror or err}") from None
        finally:
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()


def write_output_bytes(path: Path, data: bytes, overwrite: bool) -> None:
    with atomic_output(path, overwrite) as tmp:
        tmp.write_bytes(data)


def write_output_text(path: Path, text: str, overwrite: bool) -> None:
    write_output_bytes(path, text.encode("utf-8"), overwrite)


def exclusive_sibling(path: Path, purpose: str) -> Path:
    """A new, empty, hidden file beside `path`, created by this call alone (O_CREAT | O_EXCL,
    never through an existing name or link) with the umask's permissions, under a random name."""
    for _ in range(16):
        candidate = path.with_name(f".{path.name}.{purpose}-{secrets.token_hex(6)}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {path}")


def _check_parent(path: Path) -> None:
    """The nearest existing ancestor must be a folder we can write into."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write {path}: {parent} is not writable")


def _probe(path: Path) -> None:
    """Create and remove an empty sibling when the folder exists: a folder that takes no files
    (/proc, a read-only mount) is found now, not after hours of work."""
    if not path.parent.is_dir():
        return
    try:
        exclusive_sibling(path, "probe").unlink()
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}") from None
