"""The CPU budget of a scan on Ray: the model actors', the reads', and a reserve for writes.

Policy (docs/design-notes.md, "CPU budget"): writes are small and on the path to every result,
so each node keeps `WRITE_RESERVE_CPUS` for them; GPU actors take one CPU each (the feeder
loop). On the CPU there is one model actor per node, with a model thread per core (per
`cpu_threads` cores: each thread runs that fixed thread count) that share out each block's
batches (`pcam_scan.model.predictor_pool`), so a heavy model keeps every core busy to the last
batch, and a node loads its weights once; together the actors ask for half of what is left,
and reads get the rest, as a bounded number of tasks (two at least), so they never take the
CPUs the writes and the model need. Ray shares
are reservations, not threads: an actor's thread runs on a core whatever share it holds, and
an idle actor (a cheap model waiting for reads) costs no CPU. A cluster smaller than those
minimum shares (one CPU: a small pod, a 1-vCPU VM, a GPU node with one CPU) gets every share
scaled down by the same factor, so that the model, two reads and the writes still fit at once:
a share that does not fit would leave its stage waiting forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cluster.session import ClusterResources, NodeShape
from pcam_scan.errors import ConfigError
from pcam_scan.model.settings import PredictorSettings

WRITE_RESERVE_CPUS = 0.5
"""Per node: two write tasks of `WRITE_TASK_CPUS` can always run."""
WRITE_TASK_CPUS = 0.25
GPU_ACTOR_CPUS = 1.0
MIN_READ_TASK_CPUS = 0.25
CALLS_PER_ACTOR = 4
"""Ray Data calls running at once in one GPU model actor: while one waits for its last batch, the
others keep the feeder's queue full, so batches fill across calls and the device never drains."""
CPU_BLOCKS_PER_CALL = 1
"""Blocks per call of a CPU actor: Ray Data hands each actor whole calls, so the call is the
unit the actors share out (one block: they end the run within a block of each other)."""


def cpu_calls_per_actor(model_threads: int) -> int:
    """Calls at once in a CPU actor: one block per model thread, and one more waiting, so no
    thread waits for a block (a block of a few patches is a single batch). More would let the
    first actor ready hold blocks that another actor could score."""
    return model_threads + 1


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
    initial_actors: int = 1
    """Actors started with the pool (it grows from there to `actors` as blocks queue up)."""
    model_threads: int = 1
    """Model threads per actor: one per core of its node on the CPU (each of the scan's fixed
    torch thread count), one on a GPU."""


READ_TASK_MEMORY_BYTES = 256 * 1024**2
"""What one read task may hold: a block's region (about 4 MB for 32x32 cells of 96 px), the
decoded tiles and OpenSlide's cache. Declaring it also keeps Ray Data from fusing the reads
into the model actors: reads run in their own tasks, overlapping with prediction."""


def check_feasible(budget: PipelineBudget, resources: ClusterResources, waiting_for_gpus: bool) -> None:
    """Refuse at once, naming what it needs, a stage whose request fits no node of the cluster:
    Ray would queue it forever (the scan sat at "slides 0/2" for good). `waiting_for_gpus` (the
    user's --gpus N) lets an autoscaling cluster add the GPU nodes it has not started yet."""
    if not resources.node_shapes:
        return
    model_gpus = 1.0 if budget.use_gpus and not waiting_for_gpus else 0.0
    stages = (
        ("the model actor", budget.cpus_per_actor, model_gpus, 0.0),
        ("a read task", budget.cpus_per_read, 0.0, float(READ_TASK_MEMORY_BYTES)),
        ("a write task", budget.cpus_per_write, 0.0, 0.0),
    )
    for stage, cpus, gpus, memory_bytes in stages:
        if not any(node.fits(cpus, gpus, memory_bytes) for node in resources.node_shapes):
            needs = NodeShape(cpus, gpus, memory_bytes)
            nodes = "; ".join(str(node) for node in resources.node_shapes[:4])
            raise ConfigError(f"no node of the Ray cluster can run {stage}, which needs {needs} (its nodes: {nodes})")


RAY_DATA_TASK_CPUS = 1.0
"""What a Ray Data task asks for when nothing says otherwise: the pipeline's repartition stage
(which takes no CPU argument) runs such tasks, so the actors never hold the last CPU."""

MIN_READ_TASKS = 2
"""Two reads at least: one's I/O overlaps another's decode."""


def cpu_model_layout(resources: ClusterResources, threads: int) -> tuple[int, int]:
    """(actors, model threads per actor) for CPU model actors whose threads each run `threads`
    torch threads: one actor per node with a thread per `threads` cores (the smallest such
    node's count, so every actor fits every node that can host one; a larger node runs several),
    so that every core scores and each node loads the weights once. With one thread per actor
    instead (two actors on 2 cores), the ten blocks of a slide split unevenly between them and
    one actor scored the last ones alone."""
    hosts = [node.cpus for node in resources.node_shapes if node.cpus >= threads]
    smallest = min(hosts) if hosts else resources.max_node_cpus
    per_actor = max(1, math.floor(smallest / threads))
    if hosts:
        actors = sum(math.floor(cpus / (per_actor * threads)) for cpus in hosts)
    else:
        actors = math.floor(resources.cpus / (per_actor * threads))
    return max(1, actors), per_actor


def plan_budget(resources: ClusterResources, model: PredictorSettings, gpus: int | None) -> PipelineBudget:
    """The budget for this cluster; `gpus` asks for that many GPU actors (autoscaling)."""
    if resources.cpus <= 0:
        raise ConfigError("the Ray cluster has no CPUs: the scan's planning, reads and writes need some")
    reserve = WRITE_RESERVE_CPUS * max(1, resources.nodes)
    use_gpus = gpus is not None or resources.gpus >= 1
    if use_gpus:
        actors = gpus or int(resources.gpus)
        cpus_per_actor = GPU_ACTOR_CPUS
        blocks_per_call = 16
        model_threads = 1
    else:
        threads = model.cpu_threads or 1
        if threads > resources.max_node_cpus:
            raise ConfigError(
                f"a CPU model actor of {threads} threads does not fit a node of {resources.max_node_cpus:g} CPUs"
            )
        actors, model_threads = cpu_model_layout(resources, threads)
        cpus_per_actor = (resources.cpus - reserve) / 2 / actors  # half the CPUs, shared out
        blocks_per_call = CPU_BLOCKS_PER_CALL
    pool = {  # how the actors share the blocks out, whatever the node's size
        "blocks_per_call": blocks_per_call,
        "calls_per_actor": CALLS_PER_ACTOR if use_gpus else cpu_calls_per_actor(model_threads),
        "initial_actors": start_with_actors(resources, actors, use_gpus),
        "model_threads": model_threads,
    }
    smallest = reserve + actors * cpus_per_actor + MIN_READ_TASKS * MIN_READ_TASK_CPUS
    if resources.cpus < smallest:  # a small node: every share scaled down alike, so all fit at once
        scale = resources.cpus / smallest
        # the actors hold their share for the whole run: what they hold must leave a task of
        # Ray Data's default CPU (its repartition stage) room to run, or that task waits for good
        actor_cpus = min(cpus_per_actor * scale, max(0.0, resources.cpus - RAY_DATA_TASK_CPUS) / actors)
        return PipelineBudget(
            use_gpus=use_gpus,
            actors=actors,
            cpus_per_actor=actor_cpus,
            read_tasks=MIN_READ_TASKS,
            cpus_per_read=MIN_READ_TASK_CPUS * scale,
            cpus_per_write=WRITE_TASK_CPUS * scale,
            **pool,
        )
    read_cpus = resources.cpus - reserve - actors * cpus_per_actor
    read_tasks = max(MIN_READ_TASKS, math.floor(read_cpus))
    return PipelineBudget(
        use_gpus=use_gpus,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        read_tasks=read_tasks,
        cpus_per_read=read_cpus / read_tasks,
        **pool,
    )


def start_with_actors(resources: ClusterResources, actors: int, use_gpus: bool) -> int:
    """Every CPU actor of a one-node cluster starts with the pool: Ray Data grows a pool only past
    1.75x utilisation, and on 2 cores one ResNet50 actor of two scored a whole 40k x 60k slide.
    A pool over several nodes (and GPU actors, which an autoscaler adds) starts with one and
    grows: an actor on a node that is lost holds its blocks until it restarts, which a cluster
    without that node never allows (tests/test_cluster.py hung with every actor started)."""
    return actors if not use_gpus and resources.nodes <= 1 else 1
