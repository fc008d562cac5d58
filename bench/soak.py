"""A soak: N small synthetic slides through the null-model Ray pipeline in ONE batch, watching
for leaks (the peers' failure at scale: TRIDENT #176, memory from 6 to 64 GB over 10,616 slides).

Every `--every` finished slides it prints, for each live process of the scan (the driver, the
model actor, the Ray task workers, Ray's own daemons), its resident set (VmRSS, MB) and its open
file descriptors, and the store's size on disk. At the end it prints the growth from the first
snapshot to the last per process that lived through both, against the target: at most 50 MB per
process and no growth in descriptors. A benchmark: prints figures and a verdict, asserts nothing
(tests/test_soak.py runs a short version and checks the trend).

    nice -n 10 python bench/soak.py                   # 1000 slides, a snapshot every 100
    python bench/soak.py --slides 200 --every 50      # quicker

The slides are a few distinct synthetic slides copied under many names (writing 1,000 slides
would take longer than scanning them); each copy is a separate file, opened, planned, scanned and
finalized like any other.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_tree import PROC, _children_of  # noqa: E402

TARGET_GROWTH_MB = 50.0
BARE_WORKER_MB = 100.0
"""A Ray worker that has run none of our tasks yet holds ~80 MB (Python and Ray); once it runs
one it imports numpy, zarr and OpenSlide and settles near 300 MB. Such a worker, idle and this
small at the first snapshot, warms up later: its growth is reported apart, not as a leak."""


@dataclass(frozen=True)
class ProcessSample:
    """One process at one moment: its pid, role, resident set (MB) and open descriptors."""

    pid: int
    role: str
    rss_mb: float
    fds: int


def role_of(cmdline: str, pid: int, driver_pid: int) -> str:
    """driver, model actor, task worker (reads and writes), idle worker or a Ray daemon."""
    if pid == driver_pid:
        return "driver"
    if "PredictBlocks" in cmdline or "MapWorker" in cmdline:
        return "model actor"
    if cmdline.startswith("ray::IDLE"):
        return "worker (idle)"
    if cmdline.startswith("ray::"):
        return "worker (" + cmdline.split()[0][5:] + ")"
    for daemon in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env"):
        if daemon in cmdline:
            return f"ray {daemon}"
    return Path(cmdline.split()[0]).name if cmdline else "?"


def sample_tree(driver_pid: int) -> list[ProcessSample]:
    """RSS and open descriptors of every process under the driver (Ray's workers included)."""
    out = []
    for pid in sorted(_children_of(driver_pid)):
        try:
            status = (PROC / str(pid) / "status").read_text()
            cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fds = len(os.listdir(PROC / str(pid) / "fd"))
        except OSError:
            continue  # exited between the listing and the read
        rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        out.append(ProcessSample(pid, role_of(cmdline.strip(), pid, driver_pid), rss_kb / 1024, fds))
    return out


def folder_mb(path: Path) -> float:
    """Bytes on disk under `path` (the store), in MB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total / 1e6


@dataclass
class Snapshot:
    slides_done: int
    seconds: float
    store_mb: float
    processes: list[ProcessSample]


def print_snapshot(snap: Snapshot) -> None:
    roles: dict[str, list[ProcessSample]] = {}
    for sample in snap.processes:
        roles.setdefault(sample.role, []).append(sample)
    parts = []
    for role in sorted(roles):
        group = roles[role]
        rss = "/".join(f"{s.rss_mb:.0f}[{s.pid}]" for s in group)
        fds = "/".join(str(s.fds) for s in group)
        parts.append(f"{role} x{len(group)}: RSS[pid] {rss} MB, fds {fds}")
    print(f"[{snap.slides_done} slides, {snap.seconds:.0f} s] store {snap.store_mb:.2f} MB | " + " | ".join(parts))
    sys.stdout.flush()


@dataclass(frozen=True)
class Growth:
    """One process that lived from the first snapshot to the last: its RSS and descriptor growth."""

    pid: int
    role: str
    rss_mb: float
    fds: int
    bare_at_start: bool = False


def growth(snapshots: list[Snapshot]) -> list[Growth]:
    """Per process of the first snapshot seen again later: its last sample minus its first (the
    model actor is released as the batch's last blocks finish, so the final snapshot may miss it)."""
    first = {s.pid: s for s in snapshots[0].processes}
    last: dict[int, ProcessSample] = {}
    for snapshot in snapshots[1:]:
        last.update({s.pid: s for s in snapshot.processes if s.pid in first})
    return [
        Growth(
            pid,
            sample.role,
            sample.rss_mb - first[pid].rss_mb,
            sample.fds - first[pid].fds,
            first[pid].role == "worker (idle)" and first[pid].rss_mb < BARE_WORKER_MB,
        )
        for pid, sample in sorted(last.items())
    ]


def make_slides(folder: Path, count: int, distinct: int, width_px: int, mpp_um_px: float) -> list[Path]:
    """`count` slide files: `distinct` synthetic slides (half with a tumour) copied round-robin."""
    from pcam_scan.synth import SlideSpec, SynthSpec, write_synthetic_dataset

    source = folder / "distinct"
    spec = SynthSpec(SlideSpec(width_px, width_px, mpp_um_px), (distinct + 1) // 2, distinct // 2, seed=24)
    write_synthetic_dataset(source, spec)
    originals = sorted(source.glob("*.tif"))
    slides = folder / "slides"
    slides.mkdir()
    paths = []
    for index in range(count):
        target = slides / f"soak_{index:05d}.tif"
        shutil.copyfile(originals[index % len(originals)], target)
        paths.append(target)
    return paths


def run_soak(
    slide_dir: Path,
    store: Path,
    every: int,
    num_cpus: int | None,
    on_snapshot: Callable[[Snapshot], None] = print_snapshot,
) -> tuple[list[Snapshot], int]:
    """Scan every slide of `slide_dir` into `store` in one batch on Ray with the null model,
    taking a snapshot every `every` finished slides (and at the end). Returns (snapshots, failed)."""
    from cluster.executor import ray_executor
    from pcam_scan.model.random_model import write_random_checkpoint
    from pcam_scan.scan.progress import ScanProgress
    from pcam_scan.scan.runner import Placement, ScanRequest, run_scan

    checkpoint = store.parent / "null.safetensors"
    write_random_checkpoint(checkpoint, "null")
    snapshots: list[Snapshot] = []
    started = time.perf_counter()

    def snap(done: int) -> None:
        snapshot = Snapshot(done, time.perf_counter() - started, folder_mb(store), sample_tree(os.getpid()))
        snapshots.append(snapshot)
        on_snapshot(snapshot)

    class SoakProgress(ScanProgress):
        def slide_done(self) -> None:
            super().slide_done()
            if self.slides_done % every == 0:
                snap(self.slides_done)

    request = ScanRequest((str(slide_dir),), str(checkpoint), str(store), placement=Placement(num_cpus=num_cpus))
    with open(os.devnull, "w") as quiet:
        outcomes = run_scan(request, ray_executor, SoakProgress(stream=quiet))
    failed = [o for o in outcomes if o.failed]
    for outcome in failed[:3]:
        print(f"failed: {outcome.slide_id}: {outcome.message}")
    return snapshots, len(failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slides", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="a snapshot every this many finished slides")
    parser.add_argument("--distinct", type=int, default=4, help="distinct synthetic slides the copies come from")
    parser.add_argument("--width", type=int, default=2304, help="slide side, px (square)")
    parser.add_argument("--mpp", type=float, default=0.486)
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args()
    cores = args.num_cpus or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_slides(folder, args.slides, args.distinct, args.width, args.mpp)
        print(
            f"soak: {args.slides} slides of {args.width}x{args.width} px at {args.mpp} um/px, null model, "
            f"Ray on {cores} CPU cores, one batch; a snapshot every {args.every} slides"
        )
        snapshots, failed = run_soak(folder / "slides", folder / "soak.zarr", args.every, args.num_cpus)
    if len(snapshots) < 2:
        print("fewer than two snapshots: no trend")
        return
    first, last = snapshots[0], snapshots[-1]
    print(
        f"\ngrowth from slide {first.slides_done} to each process's last snapshot (up to slide "
        f"{last.slides_done}; failed slides: {failed}):"
    )
    worst_mb, worst_fds = 0.0, 0
    for g in sorted(growth(snapshots), key=lambda g: g.role):
        warm_up = " (a bare worker at the start: warm-up, not counted)" if g.bare_at_start else ""
        print(f"  {g.role} (pid {g.pid}): RSS {g.rss_mb:+.1f} MB, fds {g.fds:+d}{warm_up}")
        if not g.bare_at_start:
            worst_mb, worst_fds = max(worst_mb, g.rss_mb), max(worst_fds, g.fds)
    verdict = "PASS" if worst_mb <= TARGET_GROWTH_MB and worst_fds <= 0 else "FAIL"
    print(
        f"{verdict}: largest growth {worst_mb:+.1f} MB (target <= {TARGET_GROWTH_MB:.0f} MB per process), "
        f"fds {worst_fds:+d} (target: no growth); store {first.store_mb:.1f} -> {last.store_mb:.1f} MB"
    )


if __name__ == "__main__":
    main()
