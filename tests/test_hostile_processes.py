"""Processes under hostile conditions, with real processes: two scans of one store at once, a
scan lock held by a live or a dead process, a scan stopped by SIGTERM (its run still recorded),
and a training run killed with SIGTERM while its data-loader workers run (none may outlive it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pcam_scan.cli import main
from pcam_scan.errors import Terminated
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.runner import Placement, ScanRequest, run_scan
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.store import HeatmapStore
from pcam_scan.store.location import StoreLocation
from pcam_scan.store.run_records import read_run_records
from pcam_scan.store.schema import RunRecord
from tests.hostile_cases import changed, one_error_line, run_cli, snapshot
from tests.test_scan import assert_same_heatmaps

CLI = [sys.executable, "-m", "pcam_scan.cli"]
HANG_DEADLINE_S = 300  # a guard against hanging, not a timing assertion


def _scan_argv(slides: Path, model: Path, store: Path, block_cells: int = 16) -> list[str]:
    return [
        "scan",
        str(slides / "normal_001.tif"),
        "--model",
        str(model),
        "--store",
        str(store),
        "--in-process",
        "--block-cells",
        str(block_cells),
        "--device",
        "cpu",
    ]


def test_two_scans_of_one_store_cooperate_or_the_second_is_refused_at_once(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path
) -> None:
    store = tmp_path / "run.zarr"
    argv = [*CLI, *_scan_argv(synth_dataset, tiny_checkpoint, store)]
    scans = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(scan.wait(timeout=HANG_DEADLINE_S), *scan.communicate()) for scan in scans]
    for code, _out, err in results:
        assert "Traceback" not in err and "ContainsArrayError" not in err, err
        if code != 0:  # refused: one line naming the holder, and nothing else
            assert code == 2, err
            line = one_error_line(err.splitlines())
            assert "is being scanned by pid" in line and f"on host {socket.gethostname()}" in line
    assert 0 in [code for code, _, _ in results]
    reader = HeatmapStore.open(str(store))
    assert reader.slide_status("normal_001").state.value == "complete"
    assert not reader.pending_blocks("normal_001")
    assert not (tmp_path / "run.zarr.lock").exists()


def test_a_scan_lock_held_by_a_live_process_refuses_the_scan_with_its_pid_and_host(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        lock = tmp_path / "run.zarr.lock"
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "then"}))
        before = snapshot(tmp_path)
        code, _, err = run_cli(_scan_argv(synth_dataset, tiny_checkpoint, tmp_path / "run.zarr"), capsys)
        line = one_error_line(err)
        assert code == 2 and f"is being scanned by pid {holder.pid} on host {socket.gethostname()}" in line
        assert changed(before, snapshot(tmp_path)) == set()  # no store created, the lock kept
    finally:
        holder.kill()
        holder.wait()


def test_a_scan_lock_left_by_a_dead_process_is_taken_over(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "run.zarr.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    code, _, _ = run_cli(_scan_argv(synth_dataset, tiny_checkpoint, tmp_path / "run.zarr"), capsys)
    assert code == 0
    assert not lock.exists()


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid`, from /proc."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_training_leaves_no_orphan_workers(tmp_path: Path) -> None:
    from tests.test_training import write_pcam_folder

    write_pcam_folder(tmp_path / "pcam", {"train": 64, "valid": 16})
    argv = [
        *CLI,
        "train",
        "--pcam",
        str(tmp_path / "pcam"),
        "--out",
        str(tmp_path / "m.safetensors"),
        "--arch",
        "tiny-cnn",
        "--no-pretrained",
        "--workers",
        "2",
        "--epochs",
        "1000",
        "--frozen-epochs",
        "0",
        "--lr",
        "0.001",
        "--lr-find-iterations",
        "0",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
    ]
    run = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + HANG_DEADLINE_S
    workers: set[int] = set()
    while len(workers) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        workers = _children(run.pid)
    assert len(workers) >= 2, f"training exited with {run.poll()} before its workers started"
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=HANG_DEADLINE_S)
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)]
    assert not (tmp_path / "m.safetensors").exists()


CHILD_SCRIPT = """
import os, sys, time
from pcam_scan.resources import die_with_parent
child = os.fork()
if child == 0:
    if sys.argv[1] == "die":
        die_with_parent()
    time.sleep(600)  # busy elsewhere: no watchdog of its own looks at the parent
    os._exit(0)
print(child, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc")
def test_a_worker_that_asked_to_die_with_its_parent_does_when_the_parent_gets_sigterm() -> None:
    parent = subprocess.Popen([sys.executable, "-c", CHILD_SCRIPT, "die"], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.stdout.close()
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=HANG_DEADLINE_S)
    deadline = time.monotonic() + HANG_DEADLINE_S
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


@pytest.mark.parametrize("where", ["in process", "on Ray"])
def test_sigterm_to_a_scan_exits_143_records_it_removes_the_lock_and_resumes_exactly(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path, where: str
) -> None:
    """Re-probe case O: an in-process scan exited -15 and left STORE.lock behind; a Ray scan
    exited -6 (Abseil's failure-signal handler, which Ray's core worker installs, aborted it).
    Both must exit 143 with one line, record the run as interrupted with its slide unfinished,
    let the lock go, and resume to the heatmaps of an uninterrupted scan."""
    store = tmp_path / "run.zarr"
    # small blocks: many chunks, so the scan is still running when stopped
    argv = [*CLI, *_scan_argv(synth_dataset, tiny_checkpoint, store, block_cells=4)]
    if where == "on Ray":
        argv[argv.index("--in-process")] = "--num-cpus=2"
    reference = tmp_path / "reference.zarr"
    assert main(_scan_argv(synth_dataset, tiny_checkpoint, reference, block_cells=4)) == 0
    scan = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + HANG_DEADLINE_S
        while scan.poll() is None and time.monotonic() < deadline and not _some_block_done(store):
            time.sleep(0.1)
        running = scan.poll() is None
        scan.send_signal(signal.SIGTERM)
        _, err = scan.communicate(timeout=HANG_DEADLINE_S)
    finally:
        if scan.poll() is None:
            os.killpg(scan.pid, signal.SIGKILL)  # the driver and a local Ray it started
            scan.wait()
    assert running, "the scan finished before it could be stopped"
    assert scan.returncode == 143, err[-3000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert not (tmp_path / "run.zarr.lock").exists()
    (stopped,) = read_run_records(StoreLocation(str(store)))
    assert isinstance(stopped, RunRecord) and [(a.slide_id, a.state) for a in stopped.attempts] == [
        ("normal_001", "unfinished")
    ]
    # resumed in process: the Ray resume of a partly scanned store is tests/test_scan.py's SIGKILL
    # test's; here what matters is what the stopped run left (so Ray starts once)
    in_process = [*CLI, *_scan_argv(synth_dataset, tiny_checkpoint, store, block_cells=4)]
    resumed = subprocess.run(in_process, capture_output=True, text=True, timeout=HANG_DEADLINE_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert HeatmapStore.open(str(store)).slide_status("normal_001").state.value == "complete"
    assert_same_heatmaps(reference, store, ("normal_001",))
    # the stopped run left its record too, before the resumed one's
    records = read_run_records(StoreLocation(str(store)))
    outcomes = [(r.outcome, r.exit_code, r.message) for r in records if isinstance(r, RunRecord)]
    assert outcomes == [("interrupted", 143, "terminated (SIGTERM)"), ("completed", 0, "")]


def _some_block_done(store: Path) -> bool:
    try:
        return bool(HeatmapStore.open(str(store)).done_blocks("normal_001"))
    except Exception:  # not planned yet
        return False


class _StopAtFirstBlock(ScanProgress):
    """Progress that stops the run as SIGTERM does (`Terminated`, raised in the driver's main
    thread) when the first block comes back: the pipeline is stopped while its rows flow."""

    def block_done(self, n_patches: int, model: tuple[str, int, int] | None = None) -> None:
        raise Terminated()


def test_a_ray_scan_stopped_mid_flow_leaves_no_ray_data_thread_past_its_session(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path
) -> None:
    """The SIGTERM'd Ray scan above exited 1, not 143, in two runs of five: a Ray Data thread
    (the row iterator's block prefetcher, which Ray Data stops only when the iteration runs to its
    end, or a fetch thread of an iterator not yet collected) still ran as the session ended, and
    a Ray call from it after `ray.shutdown` makes Ray's core worker exit the process. Every such
    thread must have ended before the session does."""
    import ray

    from cluster.executor import ray_executor
    from cluster.pipeline import ray_data_threads

    request = ScanRequest(
        (str(synth_dataset / "normal_001.tif"),),
        str(tiny_checkpoint),
        str(tmp_path / "run.zarr"),
        ScanSettings(block_cells=4),
        Placement(num_cpus=2),
    )
    with pytest.raises(Terminated):
        run_scan(request, ray_executor, _StopAtFirstBlock())
    assert not ray.is_initialized()
    assert [thread.name for thread in ray_data_threads()] == []
