"""Ray clusters for real: a head and two worker nodes losing one mid-batch, and job submission
to a `ray start --head` cluster with its dashboard."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pcam_scan.cli import main
from pcam_scan.store import HeatmapStore
from pcam_scan.store.schema import SlideState
from tests.test_scan import GOOD, assert_same_heatmaps, scan_args

SLIDES_ARGS = ("--block-cells", "8")


@pytest.fixture(scope="module")
def slides(synth_dataset: Path) -> list[str]:
    return [str(synth_dataset / f"{name}.tif") for name in GOOD]


@pytest.fixture(scope="module")
def reference_store(slides: list[str], tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("reference") / "single_node.zarr"
    assert main(scan_args(slides, tiny_checkpoint, store, "--in-process", *SLIDES_ARGS)) == 0
    return store


def _done_blocks(store: Path) -> int:
    try:
        opened = HeatmapStore.open(str(store))
        return sum(len(opened.done_blocks(s)) for s in opened.list_slides())
    except Exception:  # not created yet by the scanning thread
        return 0


def test_losing_a_worker_node_mid_batch_still_completes_every_slide(
    slides: list[str], tiny_checkpoint: Path, reference_store: Path, tmp_path: Path
) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        workers = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
        cluster.wait_for_nodes()
        store = tmp_path / "multi_node.zarr"
        scan_over = threading.Event()
        removed: list[bool] = []  # whether the node went while the scan was still running

        def remove_a_node_mid_batch() -> None:
            deadline = time.monotonic() + 240
            while _done_blocks(store) < 3 and not scan_over.is_set() and time.monotonic() < deadline:
                time.sleep(0.2)
            import ray

            if scan_over.is_set() or not ray.is_initialized():
                return
            # the scan's driver (this process) joined one of the nodes: remove a worker it is not on
            driver_node = ray.get_runtime_context().get_node_id()
            removed.append(not scan_over.is_set())
            cluster.remove_node(next(node for node in workers if node.node_id != driver_node))

        # the scan runs in the main thread, as the CLI does (a Ray driver started from another
        # thread restarts its object ids, which can meet ids left by earlier sessions here)
        remover = threading.Thread(target=remove_a_node_mid_batch)
        remover.start()
        try:
            code = main(scan_args(slides, tiny_checkpoint, store, "--address", cluster.address, *SLIDES_ARGS))
        finally:
            scan_over.set()
            remover.join(timeout=60)
        assert removed == [True], "the batch finished before a node could be removed"
        assert code == 0
    finally:
        cluster.shutdown()
    stored = HeatmapStore.open(str(store))
    assert all(stored.slide_status(s).state is SlideState.COMPLETE for s in GOOD)
    assert_same_heatmaps(reference_store, store, GOOD)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def ray_head(tmp_path: Path):
    """A real `ray start --head` with its job server and token authentication (as a secured
    cluster runs), stopped afterwards. Yields the dashboard URL and the client environment."""
    ray_bin = Path(sys.executable).with_name("ray")
    env = {
        **os.environ,
        "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": "pcam-scan-test-token-0123456789abcdef",
    }
    # a short folder of its own (Ray's socket paths must stay under 107 characters): its processes
    # name it on their command lines, so the teardown stops this head's processes only
    temp_dir = Path(tempfile.mkdtemp(prefix="pcam-ray-", dir="/tmp"))
    dashboard_port = _free_port()
    # the job agent listens on its own port (52365 by default): any other Ray on this machine (a
    # scan of another test) holds that one, and the head then never has an agent for jobs
    subprocess.run(
        [
            str(ray_bin),
            "start",
            "--head",
            "--num-cpus",
            "2",
            "--port",
            str(_free_port()),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard_port),
            "--dashboard-agent-listen-port",
            str(_free_port()),
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
            "--temp-dir",
            str(temp_dir),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    try:
        yield f"http://127.0.0.1:{dashboard_port}", env
    finally:
        # not `ray stop`: it kills every Ray on the machine, the scans of the tests running beside
        # this one too (CI lost the gpu_report test's scan to it)
        _stop_processes_naming(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_processes_naming(marker: str) -> None:
    """SIGTERM, then SIGKILL after 10 s, every process whose command line contains `marker`."""

    def naming() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in naming():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while naming() and time.monotonic() < deadline:
            time.sleep(0.2)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: its own process, the token in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "pcam_scan.cli", *args], env=env, capture_output=True, text=True, timeout=HANG_DEADLINE_S
    )


def test_submitted_job_scans_the_batch(
    ray_head: tuple[str, dict[str, str]],
    slides: list[str],
    tiny_checkpoint: Path,
    reference_store: Path,
    tmp_path: Path,
) -> None:
    address, env = ray_head
    store = tmp_path / "job.zarr"
    submitted = _cli(env, "submit", *scan_args(slides, tiny_checkpoint, store, *SLIDES_ARGS)[1:], "--address", address)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    # one process follows the job to its end (polling `status` started a Python with Ray's job
    # client every two seconds, on the same two cores as the job)
    followed = _cli(env, "logs", job_id, "--follow", "--address", address)
    assert followed.returncode == 0, followed.stderr
    assert "2 slides: 2 ok, 0 failed" in followed.stdout
    checked = _cli(env, "status", job_id, "--address", address)
    assert checked.returncode == 0 and "SUCCEEDED" in checked.stdout, checked.stdout + checked.stderr
    assert_same_heatmaps(reference_store, store, GOOD)
    missing = _cli(env, "status", "no-such-job", "--address", address)
    assert missing.returncode == 2 and "no-such-job" in missing.stderr
    without_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    refused = _cli({**without_token, "HOME": str(tmp_path)}, "status", job_id, "--address", address)
    assert refused.returncode == 2 and "RAY_AUTH_TOKEN" in refused.stderr


HANG_DEADLINE_S = 900  # a guard against the scan waiting forever, not a timing assertion


def test_a_local_ray_of_one_cpu_scans_two_slides_to_completion(
    slides: list[str], tiny_checkpoint: Path, reference_store: Path, tmp_path: Path
) -> None:
    """Issue 24 item 5: `--num-cpus 1` sat at "slides 0/2 blocks 0/0" for good."""
    store = tmp_path / "one_cpu.zarr"
    argv = [sys.executable, "-m", "pcam_scan.cli", *scan_args(slides, tiny_checkpoint, store, "--num-cpus", "1")]
    done = subprocess.run([*argv, *SLIDES_ARGS], capture_output=True, text=True, timeout=HANG_DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    stored = HeatmapStore.open(str(store))
    assert all(stored.slide_status(s).state is SlideState.COMPLETE for s in GOOD)
    assert_same_heatmaps(reference_store, store, GOOD)


def test_a_cluster_whose_nodes_cannot_host_a_stage_is_refused_in_one_line(
    slides: list[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A head without CPUs and one GPU-less worker of 64 MiB: no node can run the GPU model actor
    or a read task (256 MiB), so the scan says which at once instead of waiting forever."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, num_gpus=0, memory=64 * 2**20)
        cluster.wait_for_nodes()
        for extra, names in ((("--device", "cuda"), "GPUs"), ((), "a read task, which needs")):
            store = tmp_path / f"refused{len(extra)}.zarr"
            argv = scan_args(slides, tiny_checkpoint, store, "--address", cluster.address, *SLIDES_ARGS, *extra)
            run = subprocess.run(
                [sys.executable, "-m", "pcam_scan.cli", *argv], capture_output=True, text=True, timeout=HANG_DEADLINE_S
            )
            errors = [line for line in run.stderr.splitlines() if line.startswith("pcam-scan: error:")]
            assert run.returncode == 2 and len(errors) == 1 and names in errors[0], run.stderr[-2000:]
            assert "Traceback" not in run.stderr
            assert not store.exists() or HeatmapStore.open(str(store)).list_slides() == []  # no slide touched
    finally:
        cluster.shutdown()
