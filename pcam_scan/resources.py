"""How much of the machine a command may ask for: worker and CPU counts capped by its cores.

`train --workers 1000` once spawned 527 processes on 2 cores. Every option that starts processes
or threads is checked here, before anything starts, with one line naming the limit.
"""

from __future__ import annotations

import os

from pcam_scan.errors import ConfigError


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_worker_count(option: str, count: int | None) -> int | None:
    """`count` when it is None or in 0..cores; otherwise a ConfigError naming the cap."""
    if count is None:
        return None
    cores = available_cores()
    if count < 0:
        raise ConfigError(f"{option} {count} must not be negative")
    if count > cores:
        raise ConfigError(f"{option} {count} exceeds the {cores} CPU cores of this machine; give at most {cores}")
    return count


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(*_: object) -> None:
    """Ask the kernel to kill this (worker) process when its parent dies, however the parent
    dies: SIGTERM, SIGKILL or a crash leave no orphan loaders holding memory. Linux only; a
    no-op elsewhere. Takes and ignores arguments so it can serve as a worker-init hook."""
    import ctypes
    import ctypes.util
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)
