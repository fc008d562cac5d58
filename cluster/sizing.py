"""The CPU budget of a scan on Ray: the model actors', the reads', and a reserve for writes.

Policy (docs/design-notes.md, "CPU budget"): writes are small and on the path to every result,
so each node keeps `WRITE_RESERVE_CPUS` for them; GPU actors take one CPU each (the feeder
loop); CPU actors take their fixed thread count, and get half of what is left; reads get the
rest, as a bounded number of tasks (two at least), so they never take the CPUs the writes and
the model need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cluster.session import ClusterResources
from pcam_scan.errors import ConfigError
from pcam_scan.model.settings import PredictorSettings

WRITE_RESERVE_CPUS = 0.5
"""Per node: two write tasks of `WRITE_TASK_CPUS` can always run."""
WRITE_TASK_CPUS = 0.25
GPU_ACTOR_CPUS = 1.0
MIN_READ_TASK_CPUS = 0.25
CALLS_PER_ACTOR = 4
"""Ray Data calls running at once in one model actor: while one waits for its last batch, the
others keep the feeder's queue full, so batches fill across calls and the device never drains."""


RAY_DATA_HELPER_ACTORS = 3
"""Ray Data's own actors in a run (stats, autoscaling coordinator, actor locations)."""


def worker_pool_size(node_cpus: float) -> int:
    """Worker processes a node keeps alive for a scan: every task of the pipeline takes at least
    `MIN_READ_TASK_CPUS` (a quarter CPU), so at most four per CPU run at once, plus Ray Data's
    helper actors. Fewer, and Ray kills idle workers that the next task must start again (each
    start imports numpy, zarr, OpenSlide and the scan: about 2 CPU-seconds)."""
    smallest_task = min(MIN_READ_TASK_CPUS, WRITE_TASK_CPUS)
    return math.ceil(node_cpus / smallest_task) + RAY_DATA_HELPER_ACTORS


@dataclass(frozen=True)
class PipelineBudget:
    """How the block pipeline is spread over the cluster."""

    use_gpus: bool
    actors: int
    cpus_per_actor: float
    read_tasks: int
    cpus_per_read: float
    cpus_per_write: float = WRITE_TASK_CPUS
    blocks_per_call: int = 1
    calls_per_actor: int = CALLS_PER_ACTOR


def plan_budget(resources: ClusterResources, model: PredictorSettings, gpus: int | None) -> PipelineBudget:
    """The budget for this cluster; `gpus` asks for that many GPU actors (autoscaling)."""
    reserve = WRITE_RESERVE_CPUS * max(1, resources.nodes)
    use_gpus = gpus is not None or resources.gpus >= 1
    if use_gpus:
        actors = gpus or int(resources.gpus)
        cpus_per_actor = GPU_ACTOR_CPUS
        blocks_per_call = 16
    else:
        threads = model.cpu_threads or 1
        if threads > resources.max_node_cpus:
            raise ConfigError(
                f"a CPU model actor of {threads} threads does not fit a node of {resources.max_node_cpus:g} CPUs"
            )
        actors = max(1, math.floor((resources.cpus - reserve) / 2 / threads))
        cpus_per_actor = float(threads)
        blocks_per_call = 4
    read_cpus = max(MIN_READ_TASK_CPUS, resources.cpus - reserve - actors * cpus_per_actor)
    read_tasks = max(2, math.floor(read_cpus))  # two at least: one's I/O overlaps another's decode
    return PipelineBudget(
        use_gpus=use_gpus,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        read_tasks=read_tasks,
        cpus_per_read=read_cpus / read_tasks,
        blocks_per_call=blocks_per_call,
    )
