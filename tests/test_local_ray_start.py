"""A local Ray that misses Ray's fixed 30 s startup wait on a busy machine is started again."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cluster.session import start_local_ray
from pcam_scan.cli import main

TIMEOUT = "The current node timed out during startup. This could happen because ..."


class Starter:
    """Fails the first `failures` starts with `message`, then comes up; counts starts and stops."""

    def __init__(self, failures: int, message: str = TIMEOUT) -> None:
        self.failures, self.message = failures, message
        self.starts = self.stops = 0

    def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise Exception(self.message)

    def stop(self) -> None:
        self.stops += 1


def test_a_startup_timeout_is_retried_after_stopping_the_half_started_node(
    capsys: pytest.CaptureFixture[str],
) -> None:
    starter = Starter(failures=2)
    start_local_ray(starter.start, starter.stop, attempts=3)
    assert (starter.starts, starter.stops) == (3, 2)
    assert "starting it again (3/3)" in capsys.readouterr().err


def test_the_last_startup_timeout_reaches_the_caller() -> None:
    starter = Starter(failures=5)
    with pytest.raises(Exception, match="timed out during startup"):
        start_local_ray(starter.start, starter.stop, attempts=2)
    assert starter.starts == 2


def test_any_other_start_error_is_not_retried() -> None:
    starter = Starter(failures=1, message="object store memory too small")
    with pytest.raises(Exception, match="object store"):
        start_local_ray(starter.start, starter.stop, attempts=3)
    assert (starter.starts, starter.stops) == (1, 0)


@pytest.mark.timeout(300)  # a guard: without the check, Ray retries its GCS connection for minutes
def test_an_address_where_no_cluster_listens_is_one_line_at_once(
    tmp_path: Path, tiny_checkpoint: Path, synth_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port just freed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slide = str(synth_dataset / "normal_001.tif")
    store = tmp_path / "s.zarr"
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        argv = ["scan", slide, "--model", str(tiny_checkpoint), "--store", str(store), "--address", address]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"pcam-scan: error: cannot reach a Ray cluster at {address}: Connection refused"]
