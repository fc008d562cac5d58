"""One scan at a time per local store: a lock file beside the store naming the holder.

Two scans started together into one new store raced on creating its arrays (in 2 of 6 trials one
died with ContainsArrayError). Rather than make every creation step tolerate a rival, the second
scan is refused at once, with one line naming the pid and host that hold the store.

The lock is `<store>.lock` (beside the store, so Zarr never sees it), created with O_EXCL and
holding `{"pid", "host", "started"}`; it is removed when the scan ends. A lock left by a process
that died on this host (SIGKILL, a crash) is taken over; one from another host is reported, since
its holder cannot be checked from here. Stores at URLs (s3://, gs://, ...) are not locked: object
stores have no exclusive create; scans into them must be run one at a time by the user.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pcam_scan.errors import StoreError
from pcam_scan.store.location import StoreLocation

LOCK_SUFFIX = ".lock"


def lock_path(location: StoreLocation) -> Path | None:
    """Where the lock of a local store lives; None for a store at a URL."""
    local = location.local_path
    if local is None:
        return None
    local = local.resolve()
    if not local.name:  # the file system's root: no folder to hold the lock beside, nor the store
        raise StoreError(f"the store {location.uri!r} is the file system root: give the store a folder of its own")
    return local.with_name(local.name + LOCK_SUFFIX)


@contextmanager
def scan_lock(location: StoreLocation) -> Iterator[None]:
    """Hold the store's scan lock for the duration of the block; StoreError when another live
    scan holds it."""
    path = lock_path(location)
    if path is None:
        yield
        return
    _acquire(path, location.uri)
    try:
        yield
    finally:
        if _holder(path).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def _acquire(path: Path, uri: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create {path.parent}: {err.strerror or err}") from None
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if attempt == 0 and _is_stale(holder):
                path.unlink(missing_ok=True)
                continue
            raise StoreError(
                f"the store {uri} is being scanned by pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} since {holder.get('started', '?')} (lock {path}); "
                "wait for that scan to end, or delete the lock if it is gone"
            ) from None
        except OSError as err:
            raise StoreError(f"cannot create the scan lock {path}: {err.strerror or err}") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        return


def _holder(path: Path) -> dict[str, object]:
    """The lock's record; {} when it is gone or unreadable (e.g. being written right now)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _is_stale(holder: dict[str, object]) -> bool:
    """Left by a process of this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
