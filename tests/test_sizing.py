"""The CPU budget of the Ray pipeline: model, reads and a write reserve never overlap."""

from __future__ import annotations

import pytest

from cluster.session import ClusterResources, NodeShape
from cluster.sizing import (
    RAY_DATA_TASK_CPUS,
    WRITE_RESERVE_CPUS,
    WRITE_TASK_CPUS,
    check_feasible,
    plan_budget,
    worker_pool_size,
)
from pcam_scan.errors import ConfigError
from pcam_scan.model.settings import PredictorSettings


@pytest.mark.parametrize(
    ("cpus", "gpus", "nodes"),
    [(2, 0, 1), (3, 0, 3), (16, 0, 1), (64, 0, 4), (16, 1, 1), (64, 8, 1)],
)
def test_the_write_reserve_is_never_given_to_reads_or_the_model(cpus: int, gpus: int, nodes: int) -> None:
    resources = ClusterResources(cpus=cpus, gpus=gpus, max_node_cpus=cpus / nodes, nodes=nodes)
    budget = plan_budget(resources, PredictorSettings(), None)
    asked = budget.actors * budget.cpus_per_actor + budget.read_tasks * budget.cpus_per_read
    assert asked + WRITE_RESERVE_CPUS * nodes <= cpus + 1e-9
    assert budget.read_tasks >= 2 and budget.actors >= 1
    assert budget.use_gpus == (gpus > 0) and (not gpus or budget.actors == gpus)


@pytest.mark.parametrize(("cpus", "threads", "model_threads"), [(2, 1, 2), (16, 1, 16), (32, 2, 16), (3, 2, 1)])
def test_a_cpu_node_gets_one_model_actor_with_a_thread_per_core_of_its_thread_count(
    cpus: int, threads: int, model_threads: int
) -> None:
    """Issue 21 item 5: on 2 cores one single-thread actor left a core idle under ResNet50, and
    two such actors split a slide's few blocks unevenly; one actor whose threads share out
    each block's batches uses both cores to the end and loads the weights once."""
    resources = ClusterResources(cpus=cpus, gpus=0, max_node_cpus=cpus)
    budget = plan_budget(resources, PredictorSettings(cpu_threads=threads), None)
    assert (budget.actors, budget.model_threads) == (1, model_threads)
    # the actors' shares together stay half of what the write reserve leaves; reads get the rest
    assert budget.actors * budget.cpus_per_actor == pytest.approx((cpus - WRITE_RESERVE_CPUS) / 2)
    assert budget.read_tasks * budget.cpus_per_read == pytest.approx((cpus - WRITE_RESERVE_CPUS) / 2)


@pytest.mark.parametrize("cpus", [1, 2, 16])
def test_a_cpu_actor_holds_a_block_per_model_thread_and_one_more(cpus: int) -> None:
    """Ray Data gives each actor whole calls: on 2 cores, calls of four blocks, four at once, let
    the first ResNet50 actor ready take a whole slide's blocks while the other sat idle. One
    block per thread and one waiting keeps every thread fed and holds no more."""
    resources = ClusterResources(cpus=cpus, gpus=0, max_node_cpus=cpus)
    budget = plan_budget(resources, PredictorSettings(cpu_threads=1), None)
    assert budget.blocks_per_call == 1 and budget.calls_per_actor == budget.model_threads + 1
    gpu = plan_budget(ClusterResources(cpus=cpus, gpus=1, max_node_cpus=cpus), PredictorSettings(), None)
    assert gpu.blocks_per_call * gpu.calls_per_actor > budget.blocks_per_call * budget.calls_per_actor


def test_a_one_node_cpu_pool_starts_every_actor_and_a_multi_node_pool_grows_from_one() -> None:
    one_node = plan_budget(ClusterResources(cpus=2, gpus=0, max_node_cpus=2), PredictorSettings(cpu_threads=1), None)
    assert one_node.initial_actors == one_node.actors == 1
    three_nodes = ClusterResources(cpus=3, gpus=0, max_node_cpus=1, nodes=3)
    spread = plan_budget(three_nodes, PredictorSettings(cpu_threads=1), None)
    assert (spread.initial_actors, spread.actors, spread.model_threads) == (1, 3, 1)
    gpu = plan_budget(ClusterResources(cpus=16, gpus=2, max_node_cpus=16), PredictorSettings(), None)
    assert gpu.initial_actors == 1


def test_cpu_actors_are_counted_per_node_of_the_cluster() -> None:
    nodes = (NodeShape(3, 0, 8 * 2**30), NodeShape(5, 0, 8 * 2**30))
    resources = ClusterResources(cpus=8, gpus=0, max_node_cpus=5, nodes=2, node_shapes=nodes)
    budget = plan_budget(resources, PredictorSettings(cpu_threads=2), None)
    assert budget.actors == 1 + 2  # an actor of 2 threads cannot straddle two nodes
    check_feasible(budget, resources, waiting_for_gpus=False)


def test_cpu_actors_take_the_smallest_hosting_nodes_thread_count_and_larger_nodes_run_several() -> None:
    nodes = (NodeShape(0, 0, 8 * 2**30), NodeShape(4, 0, 8 * 2**30), NodeShape(8, 0, 8 * 2**30))
    resources = ClusterResources(cpus=12, gpus=0, max_node_cpus=8, nodes=3, node_shapes=nodes)
    budget = plan_budget(resources, PredictorSettings(cpu_threads=1), None)
    assert (budget.actors, budget.model_threads) == (1 + 2, 4)  # the CPU-less head hosts none
    check_feasible(budget, resources, waiting_for_gpus=False)


def test_an_actor_that_fits_no_node_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        plan_budget(ClusterResources(cpus=4, gpus=0, max_node_cpus=1, nodes=4), PredictorSettings(cpu_threads=2), None)


@pytest.mark.parametrize("cpus", [1, 2, 3, 16])
def test_a_local_ray_keeps_a_worker_for_every_task_the_budget_runs_at_once(cpus: int) -> None:
    budget = plan_budget(ClusterResources(cpus=cpus, gpus=0, max_node_cpus=cpus), PredictorSettings(), None)
    # the actors, planning and reads (two pools of read_tasks), writes and finalizing (the reserve)
    at_once = budget.actors + 2 * budget.read_tasks + round(WRITE_RESERVE_CPUS / WRITE_TASK_CPUS)
    assert worker_pool_size(cpus) >= at_once


@pytest.mark.parametrize(("cpus", "gpus"), [(1, 0), (1, 1), (1.5, 0), (2, 1)])
def test_a_node_smaller_than_the_minimum_shares_still_fits_the_model_two_reads_and_the_writes(
    cpus: float, gpus: int
) -> None:
    """Issue 24 item 5: on one CPU the model actor took a whole CPU and the reads waited forever."""
    budget = plan_budget(ClusterResources(cpus=cpus, gpus=gpus, max_node_cpus=cpus), PredictorSettings(), None)
    at_once = budget.actors * budget.cpus_per_actor + budget.read_tasks * budget.cpus_per_read
    assert at_once + 2 * budget.cpus_per_write <= cpus + 1e-9
    assert budget.read_tasks >= 2 and budget.actors == 1
    assert min(budget.cpus_per_read, budget.cpus_per_write) > 0 and budget.cpus_per_actor >= 0


def test_a_cluster_without_cpus_is_refused() -> None:
    with pytest.raises(ConfigError, match="no CPUs"):
        plan_budget(ClusterResources(cpus=0, gpus=1, max_node_cpus=0), PredictorSettings(), None)


SMALL_MEMORY = NodeShape(cpus=4, gpus=0, memory_bytes=64 * 2**20)
GPU_LESS = NodeShape(cpus=4, gpus=0, memory_bytes=8 * 2**30)


@pytest.mark.parametrize(
    ("nodes", "gpus", "waiting", "refused"),
    [
        ((SMALL_MEMORY,), 0, False, "a read task, which needs 0.875 CPU, 0 GPU, 256 MiB"),
        ((NodeShape(0, 0, 8 * 2**30), SMALL_MEMORY), 0, False, "a read task"),
        ((GPU_LESS,), 1, False, "the model actor, which needs 1 CPU, 1 GPU"),
        ((GPU_LESS,), 1, True, None),  # --gpus N: an autoscaling cluster may add the GPU node
        ((GPU_LESS,), 0, False, None),
    ],
)
def test_a_stage_that_fits_no_node_is_refused_naming_what_it_needs(
    nodes: tuple[NodeShape, ...], gpus: int, waiting: bool, refused: str | None
) -> None:
    cpus = sum(node.cpus for node in nodes)
    resources = ClusterResources(cpus, gpus, max(n.cpus for n in nodes), len(nodes), node_shapes=nodes)
    budget = plan_budget(resources, PredictorSettings(), 1 if waiting else None)
    if refused is None:
        check_feasible(budget, resources, waiting_for_gpus=waiting)
        return
    with pytest.raises(ConfigError, match="no node of the Ray cluster can run") as err:
        check_feasible(budget, resources, waiting_for_gpus=waiting)
    assert refused in str(err.value)


@pytest.mark.parametrize("cpus", [1, 1.5, 2, 3, 16])
def test_the_model_actors_always_leave_room_for_a_task_of_ray_datas_default_cpu(cpus: float) -> None:
    """The repartition stage runs 1-CPU tasks: an actor holding half of one CPU starved it."""
    budget = plan_budget(ClusterResources(cpus=cpus, gpus=0, max_node_cpus=cpus), PredictorSettings(), None)
    assert cpus - budget.actors * budget.cpus_per_actor >= RAY_DATA_TASK_CPUS - 1e-9
