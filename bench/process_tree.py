"""Peak RSS of every process under a root process, read from /proc while a command runs (Linux).

A Ray scan runs in many processes (driver, GCS, raylet, read workers, model actors) that come and
go; each one's `VmHWM` (the kernel's own peak resident set) is sampled until it exits, so a short
spike between samples is still counted. Ray renames its workers (`ray::ReadBlocks`,
`ray::_MapWorker`...); the most telling name a process had is kept as its role.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class ProcessPeak:
    """One process: its pid, the most telling name it had, and its peak RSS in MB."""

    pid: int
    name: str
    peak_mb: float = 0.0
    cpu_s: float = 0.0
    """User and system CPU-seconds at its last sample (a process that exits between samples
    loses at most one interval of them)."""


def _children_of(root: int) -> set[int]:
    """All descendants of `root` (and `root`), from each process's parent pid."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: the ppid follows the last ')'
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, frontier = {root}, [root]
    while frontier:
        kids = [child for child in children.get(frontier.pop(), []) if child not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return tree


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _hwm_mb_cpu_s_and_name(pid: int) -> tuple[float, float, str] | None:
    try:
        status = (PROC / str(pid) / "status").read_text()
        stat = (PROC / str(pid) / "stat").read_text()
        cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    hwm_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    fields = stat[stat.rindex(")") + 2 :].split()  # utime and stime are fields 14 and 15 of stat
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return hwm_kb / 1024, cpu_s, cmdline


def _role(cmdline: str) -> str:
    """A short name: Ray's process title (`ray::X`), else the program and its first argument."""
    if cmdline.startswith("ray::"):
        return cmdline.split()[0]
    words = cmdline.split()
    program = [Path(w).name for w in words[:3] if not w.startswith("-")]
    return " ".join(program[:2]) or "?"


def _telling(old: str, new: str) -> bool:
    """Whether `new` says more about a process than `old` (an actor or task name beats IDLE)."""
    return old in ("", "?", "ray::IDLE") or (old.startswith("ray::") is False and new.startswith("ray::"))


@dataclass
class ProcessTreeMonitor:
    """Samples the tree under `root_pid` every `interval_s` in a thread until `stop()`."""

    root_pid: int
    interval_s: float = 0.25
    peaks: dict[int, ProcessPeak] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProcessTreeMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[ProcessPeak]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return sorted(self.peaks.values(), key=lambda p: -p.peak_mb)

    def sample(self) -> None:
        for pid in _children_of(self.root_pid):
            seen = _hwm_mb_cpu_s_and_name(pid)
            if seen is None:
                continue
            hwm_mb, cpu_s, cmdline = seen
            peak = self.peaks.setdefault(pid, ProcessPeak(pid, _role(cmdline)))
            peak.peak_mb = max(peak.peak_mb, hwm_mb)
            peak.cpu_s = max(peak.cpu_s, cpu_s)
            role = _role(cmdline)
            if role != peak.name and _telling(peak.name, role):
                peak.name = role

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)


@dataclass(frozen=True)
class MonitoredRun:
    """A command's exit code, wall seconds, output, and the peak RSS of each of its processes."""

    returncode: int
    seconds: float
    stdout: str
    peaks: list[ProcessPeak]


def run_monitored(
    command: Sequence[str],
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> MonitoredRun:
    """Run `command`, sampling its process tree; stdout and stderr come back together."""
    started = time.perf_counter()
    with subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or dict(os.environ),
        cwd=cwd,
    ) as proc:
        monitor = ProcessTreeMonitor(proc.pid).start()
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        peaks = monitor.stop()
    return MonitoredRun(proc.returncode, time.perf_counter() - started, out, peaks)


def peak_table(peaks: list[ProcessPeak], min_mb: float = 50.0) -> str:
    """Markdown rows of the processes with a peak of at least `min_mb`, largest first."""
    rows = ["| process | pid | peak RSS MB |", "|---|---|---|"]
    rows += [f"| {p.name} | {p.pid} | {p.peak_mb:,.0f} |" for p in peaks if p.peak_mb >= min_mb]
    return "\n".join(rows)
