"""Joining a Ray cluster, or starting a local one for the length of a run."""

from __future__ import annotations

import gc
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pcam_scan.errors import ConfigError


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster offers: totals, and the most CPUs any one node has (an actor must fit)."""

    cpus: float
    gpus: float
    max_node_cpus: float
    nodes: int = 1
    node_shapes: tuple[NodeShape, ...] = ()
    """Each live node's resources (empty: not known, nothing is checked against them)."""


@dataclass(frozen=True)
class NodeShape:
    """What one node offers: a stage's request must fit one node whole."""

    cpus: float
    gpus: float
    memory_bytes: float

    def fits(self, cpus: float, gpus: float, memory_bytes: float) -> bool:
        slack = 1e-9
        return cpus <= self.cpus + slack and gpus <= self.gpus + slack and memory_bytes <= self.memory_bytes + slack

    def __str__(self) -> str:
        return f"{self.cpus:g} CPU, {self.gpus:g} GPU, {self.memory_bytes / 2**20:.0f} MiB"


LOCAL_START_ATTEMPTS = 3
"""How often a local Ray is started before the run gives up: Ray waits a fixed 30 s for its own
raylet to register, which a loaded laptop or CI machine can miss while nothing is wrong."""


def start_local_ray(
    start: Callable[[], object], stop: Callable[[], None], attempts: int = LOCAL_START_ATTEMPTS
) -> None:
    """Call `start` until the local node comes up, stopping the half-started node between tries.

    Only Ray's startup timeout is retried; any other error is the user's to see at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            start()
            return
        except Exception as err:  # Ray raises a bare Exception for this one
            if "timed out during startup" not in str(err) or attempt == attempts:
                raise
            stop()
            print(
                f"pcam-scan: the local Ray node did not start within Ray's 30 s (machine busy?); "
                f"starting it again ({attempt + 1}/{attempts})",
                file=sys.stderr,
                flush=True,
            )


@contextmanager
def ray_session(
    address: str | None, num_cpus: int | None = None, worker_pool: int | None = None
) -> Iterator[ClusterResources]:
    """Connect to `address` (a running cluster) or start a local Ray, and always let it go.

    A local Ray started here is stopped afterwards; a joined cluster is only disconnected.
    `worker_pool` is how many idle worker processes a local Ray keeps (Ray's default is one per
    CPU and it kills the rest after a second idle): a scan whose tasks take a quarter of a CPU
    would otherwise start, import and kill workers all along (measured on 2 cores: 14 s of a
    40 s scan). A joined cluster keeps its own setting (deploy/README.md).
    """
    import ray

    if ray.is_initialized():
        raise ConfigError("Ray is already initialised in this process; pcam-scan manages its own session")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    # A process that ran a session before (a notebook, the tests) may still hold object refs of it
    # in reference cycles. Freed during the next session, a ref whose id that session reuses
    # would release that session's object: free them now, while no session is connected.
    gc.collect()
    handler = _SigtermHandler()
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, **kwargs)
        else:  # "local": a cluster of our own, even when `ray start` left one running here
            system = {"num_workers_soft_limit": worker_pool} if worker_pool else None
            start_local_ray(
                lambda: ray.init(address="local", num_cpus=num_cpus, _system_config=system, **kwargs),
                stop=ray.shutdown,
            )
    except ConnectionError as err:
        raise ConfigError(f"cannot reach a Ray cluster at {address}: {err}") from None
    try:
        handler.restore()
        # ray's own annotations leave cluster_resources and nodes untyped
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        nodes = ray.nodes()  # type: ignore[no-untyped-call]
        alive = [node["Resources"] for node in nodes if node.get("Alive")]
        yield ClusterResources(
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
            max_node_cpus=max((float(node.get("CPU", 0)) for node in alive), default=0.0),
            nodes=max(1, len(alive)),
            node_shapes=tuple(
                NodeShape(float(node.get("CPU", 0)), float(node.get("GPU", 0)), float(node.get("memory", 0)))
                for node in alive
            ),
        )
    finally:
        try:
            ray.shutdown()
        finally:
            handler.restore()


REACH_TIMEOUT_S = 10.0
"""How long a cluster's GCS port may take to accept a connection before the address is refused."""


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """ConfigError unless something listens at `address` (`HOST:PORT` or `ray://HOST:PORT`).

    Given an address where nothing listens (a typo, a stopped head), `ray.init` retries its GCS
    connection for minutes; one TCP connect says at once. `auto` and other forms go to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConfigError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


class _SigtermHandler:
    """The process's SIGTERM handler from before `ray.init`, to put back after it.

    `ray.init` replaces it twice: with Ray's Python handler, and, as its core worker starts, at the
    C level with Abseil's failure-signal handler, which prints a stack and aborts the driver
    (exit -6): nothing ran the scan's own unwinding, so the run was not recorded as interrupted.
    Setting the handler again with `signal.signal` installs Python's own C handler over
    Abseil's, so SIGTERM reaches the driver's handler (the CLI's raises `Terminated`: the run
    unwinds, is recorded, the store's lock is let go, Ray shuts down, and it exits 143)."""

    def __init__(self) -> None:
        self.main_thread = threading.current_thread() is threading.main_thread()
        self.handler = signal.getsignal(signal.SIGTERM) if self.main_thread else None

    def restore(self) -> None:
        if self.main_thread and self.handler is not None:
            signal.signal(signal.SIGTERM, self.handler)
