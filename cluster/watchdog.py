"""A scan never waits forever for what the cluster cannot grant (issue 24, item 5).

`cluster.sizing.check_feasible` refuses, before the run, a stage no node can host. Yet a demand
can still become impossible while the scan runs: a worker node that could host the model actor
leaves, a stage asks for more than the shapes known at the start. Ray then queues it for good,
and the scan sat at "slides 0/2" without a word. `StallGuard` watches the run instead: when no
record has come back for `stall_s`, it asks Ray for its pending task and actor demands (the
autoscaler's view, `ray.autoscaler.v2.sdk.get_cluster_status`: the GCS's own, no dashboard
needed) and fails the run with one line naming the resource when a demand fits no live node.
A demand that fits some node's size can still wait for good, when other work holds what it needs
(another job's actor on the only GPU). So the guard also reads this job's own actors from the
GCS's actor table (`held_by_other_work`: the table the state API's `list_actors` serves, read
straight from the GCS because the scan's sessions run without the dashboard that API needs): one
of them pending creation for longer than `stall_s`, whose resources some live node has in total
but none has free, fails the run in one line naming the resource and the other jobs' actors that
hold it. Another job's pending demands are never this scan's error.

`watched` reads the pipeline's records in a thread of its own, so that the scan's thread can look
while none comes (Ray Data's iterator has no timeout).
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from pcam_scan.errors import PcamScanError

T = TypeVar("T")

STALL_S = 300.0
"""No record for this long, and a demand no node can host: the run fails. Long enough for an
autoscaler to add a node of a shape it knows (a few minutes)."""
AUTOSCALING_STALL_S = 1800.0
"""The same with `--gpus N`, where the user asked to wait for GPU nodes an autoscaler adds."""
POLL_S = 1.0
"""How often the scan's thread looks while no record comes."""
PROBE_EVERY_S = 10.0
"""Once stalled, how often Ray is asked for its demands (one GCS call each)."""

_SYSTEM_RESOURCES = ("node:", "accelerator_type:")


class UnplaceableDemandError(PcamScanError):
    """Ray holds a task or actor demand of the scan that no node of the cluster can host, or
    that waits for what other work holds."""


@dataclass(frozen=True)
class Demand:
    """A pending resource bundle Ray reports (`count` tasks or actors ask for it)."""

    bundle: Mapping[str, float]
    count: int

    def missing(self, nodes: Sequence[Mapping[str, float]]) -> tuple[str, ...] | None:
        """The resources no node has enough of for this bundle (fewest first), or None when
        some node can host it whole."""
        wanted = {k: v for k, v in self.bundle.items() if v > 0 and not k.startswith(_SYSTEM_RESOURCES)}
        shortfalls = [tuple(k for k, v in wanted.items() if node.get(k, 0.0) + 1e-9 < v) for node in nodes]
        if not shortfalls:
            return tuple(sorted(wanted))
        if any(not short for short in shortfalls):
            return None
        return min(shortfalls, key=len)

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(self.bundle.items())) + "}"


def pending_demands() -> list[Demand]:
    """The task and actor demands Ray's autoscaler state holds (pending, not yet placed)."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status

    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    return [
        Demand({str(k): float(v) for k, v in by_count.bundle.items()}, int(by_count.count))
        for demand in status.resource_demands.ray_task_actor_demand
        for by_count in demand.bundles_by_count
    ]


def live_node_resources() -> list[dict[str, float]]:
    import ray

    nodes = ray.nodes()  # type: ignore[no-untyped-call]
    return [{str(k): float(v) for k, v in node["Resources"].items()} for node in nodes if node.get("Alive")]


def unplaceable(demands: Sequence[Demand], nodes: Sequence[Mapping[str, float]]) -> str | None:
    """One line naming the first demand no node can host, and what it lacks; None if all fit."""
    for demand in demands:
        missing = demand.missing(nodes)
        if missing is not None:
            shapes = "; ".join(
                ", ".join(f"{v:g} {k}" for k, v in sorted(n.items()) if k in ("CPU", "GPU", *demand.bundle))
                or "no resources"
                for n in nodes[:4]
            )
            return (
                f"Ray cannot place {demand.count} pending task(s)/actor(s) needing {demand} on any node: "
                f"the cluster lacks {', '.join(missing)} (its nodes: {shapes or 'none alive'})"
            )
    return None


@dataclass(frozen=True)
class ActorEntry:
    """One row of the GCS's actor table, as the guard needs it."""

    job_id: str
    class_name: str
    state: str
    required: Mapping[str, float]
    since_s: float
    """When it entered its state (seconds since the epoch)."""


def actor_entries() -> list[ActorEntry]:
    """Every actor the GCS knows (no dashboard needed)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    table_data = gcs_pb2.ActorTableData  # type: ignore[attr-defined]  # generated protobuf, no stubs
    rows = [table_data.FromString(raw) for raw in state._connect_and_get_accessor().get_actor_table(None, None)]
    return [
        ActorEntry(
            row.job_id.hex(),
            row.class_name,
            table_data.ActorState.Name(row.state),
            {str(k): float(v) for k, v in row.required_resources.items()},
            row.timestamp / 1000.0,
        )
        for row in rows
    ]


def free_node_resources() -> list[dict[str, float]]:
    from ray._private.state import available_resources_per_node

    free = available_resources_per_node()  # type: ignore[no-untyped-call]
    return [{str(k): float(v) for k, v in node.items()} for node in free.values()]


def held_by_other_work(
    job_id: str,
    actors: Sequence[ActorEntry],
    nodes: Sequence[Mapping[str, float]],
    free: Sequence[Mapping[str, float]],
    pending_since_s: float,
) -> str | None:
    """One line when an actor of job `job_id`, pending creation since before `pending_since_s`,
    fits some node's size but no node has it free: the resource it waits for, and the other
    jobs' live actors holding it. None otherwise (nothing of ours waits, or it does not fit at
    all: `unplaceable` says that)."""
    for actor in actors:
        if actor.job_id != job_id or actor.state != "PENDING_CREATION" or actor.since_s > pending_since_s:
            continue
        demand = Demand(actor.required, 1)
        if demand.missing(nodes) is not None:
            continue
        short = demand.missing(free)
        if not short:  # a node has room for it (Ray is still placing it), or it asks for nothing
            continue
        holders = sorted(
            {
                f"job {other.job_id}: {other.class_name}"
                for other in actors
                if other.job_id != job_id and other.state == "ALIVE" and any(other.required.get(k) for k in short)
            }
        )
        return (
            f"its {actor.class_name} actor needs {demand}, which the cluster's nodes can host, but their "
            f"{', '.join(short)} is held by other work"
            + (f" ({'; '.join(holders)})" if holders else " (tasks or actors of other jobs)")
            + "; free it or give the scan a cluster of its own"
        )
    return None


def this_job_waits_for_other_work(stall_s: float) -> str | None:
    """`held_by_other_work` for this driver's job, on the cluster Ray is connected to."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    return held_by_other_work(job, actor_entries(), live_node_resources(), free_node_resources(), time.time() - stall_s)


class StallGuard:
    """Fails a run that made no progress for `stall_s` while Ray holds a demand no node can
    host (see the module docstring)."""

    def __init__(
        self,
        stall_s: float = STALL_S,
        probe: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not stall_s > 0:
            raise ValueError("the stall time must be > 0 s")
        self.stall_s = stall_s
        self._probe = probe or (
            lambda: unplaceable(pending_demands(), live_node_resources()) or this_job_waits_for_other_work(stall_s)
        )
        self._clock = clock
        self._last_progress = clock()
        self._last_probe = -float("inf")

    def progressed(self) -> None:
        self._last_progress = self._clock()

    def check(self) -> None:
        """UnplaceableDemandError when stalled and Ray holds a demand no node can host, or one
        of this job's that waits for what other work holds."""
        now = self._clock()
        if now - self._last_progress < self.stall_s or now - self._last_probe < PROBE_EVERY_S:
            return
        self._last_probe = now
        try:
            problem = self._probe()
        except Exception:  # Ray's API moved or the GCS did not answer: keep waiting, look again
            return
        if problem is not None:
            raise UnplaceableDemandError(f"the scan made no progress for {now - self._last_progress:.0f} s: {problem}")


_END = object()
JOIN_S = 60.0
"""How long the scan waits for the pipeline's iterator to unwind after it stopped reading."""


class _PipelineStopped(BaseException):
    """Raised inside the reading thread when the scan stops reading (see `watched`)."""


def watched(records: Iterator[T], guard: StallGuard, poll_s: float = POLL_S) -> Iterator[T]:
    """`records`, read in a thread of their own; while none comes, `guard.check()` every
    `poll_s`. An error of the iteration is raised here. When the caller stops early (the guard,
    an error, Ctrl-C, SIGTERM), `_PipelineStopped` is raised inside the reading thread, so that
    the iterator unwinds there as it did under Ctrl-C in one thread (Ray Data shuts its
    executor down in its `finally`) before the Ray session ends."""
    box: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=256)
    stop = threading.Event()

    def put(item: object, err: BaseException | None = None) -> bool:
        while not stop.is_set():
            try:
                box.put((item, err), timeout=poll_s)
                return True
            except queue.Full:
                continue
        return False

    # `_PipelineStopped` is raised in the thread only while it runs inside `pump`'s outer try
    # (checked and raised under `reading_lock`): raised as the thread starts, or after `pump`
    # returned, it would escape into threading's own frames and print a traceback
    reading_lock = threading.Lock()
    reading = [False]

    def read_all() -> None:
        try:
            for record in records:
                if not put(record):
                    return
            put(_END)
        except _PipelineStopped:
            return
        except BaseException as err:
            put(_END, err)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()

    def pump() -> None:
        try:
            with reading_lock:
                reading[0] = True
            try:
                read_all()
            finally:
                with reading_lock:
                    reading[0] = False
        except _PipelineStopped:  # arrived while unwinding: nothing left to do
            return

    thread = threading.Thread(target=pump, name="scan-pipeline-records", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item, err = box.get(timeout=poll_s)
            except queue.Empty:
                guard.check()
                continue
            guard.progressed()
            if err is not None:
                raise err
            if item is _END:
                return
            yield cast(T, item)  # anything but _END came from `records`
    finally:
        stop.set()
        with reading_lock:
            if reading[0]:
                _raise_in(thread, _PipelineStopped)
        thread.join(timeout=JOIN_S)


def _raise_in(thread: threading.Thread, kind: type[BaseException]) -> None:
    """Raise `kind` in `thread` at its next Python instruction (CPython's async exception)."""
    if thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(kind))
