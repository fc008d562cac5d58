"""A scan never waits forever for what the cluster cannot grant (issue 24, item 5): the runtime
guard (cluster.watchdog) on a real local Ray whose model actor asks for a GPU the cluster lacks,
the up-front check (cluster.sizing.check_feasible) bypassed through `run_scan`'s executor
factory, the lowest-level entry; and which demands count as unplaceable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cluster.executor import RayExecutor
from cluster.session import ray_session
from cluster.sizing import plan_budget, worker_pool_size
from cluster.watchdog import ActorEntry, Demand, UnplaceableDemandError, held_by_other_work, unplaceable
from pcam_scan.scan.runner import Placement, ScanRequest, run_scan
from pcam_scan.scan.settings import ScanRun, ScanSettings
from pcam_scan.store import HeatmapStore
from pcam_scan.store.schema import SlideState

NODE = {"CPU": 2.0, "memory": 4e9, "node:10.0.0.1": 1.0}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0, "memory": 32e9}


def test_a_demand_that_fits_some_node_is_never_unplaceable() -> None:
    assert Demand({"CPU": 1.0, "GPU": 1.0}, 1).missing([NODE, GPU_NODE]) is None
    assert Demand({"CPU": 2.0, "node:10.0.0.1": 0.001}, 3).missing([NODE]) is None
    assert unplaceable([Demand({"CPU": 0.25}, 8)], [NODE]) is None


def test_an_unplaceable_demand_names_what_the_cluster_lacks() -> None:
    assert Demand({"CPU": 1.0, "GPU": 1.0}, 1).missing([NODE]) == ("GPU",)
    assert Demand({"CPU": 1.0, "model_slot": 1.0}, 1).missing([NODE, GPU_NODE]) == ("model_slot",)
    assert Demand({"CPU": 16.0}, 1).missing([NODE, GPU_NODE]) == ("CPU",)
    assert Demand({"CPU": 1.0}, 1).missing([]) == ("CPU",)
    line = unplaceable([Demand({"CPU": 0.5}, 2), Demand({"CPU": 1.0, "GPU": 1.0}, 1)], [NODE])
    assert line is not None and "lacks GPU" in line and "{CPU: 1, GPU: 1}" in line and "\n" not in line


@contextmanager
def gpu_actor_without_a_check(run: ScanRun, placement: Placement) -> Iterator[RayExecutor]:
    """`ray_executor` without its up-front check: a GPU model actor on a local Ray of 2 CPUs."""
    with ray_session(None, 2, worker_pool_size(2)) as resources:
        assert resources.gpus == 0
        budget = plan_budget(resources, run.predictor, gpus=1)  # one GPU actor, asked for anyway
        assert budget.use_gpus
        yield RayExecutor(run, budget, stall_s=2.0)


def test_a_scan_waiting_for_a_gpu_the_cluster_lacks_fails_naming_it(
    synth_dataset: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    store = tmp_path / "run.zarr"
    request = ScanRequest(
        (str(synth_dataset / "normal_001.tif"),), str(tiny_checkpoint), str(store), ScanSettings(block_cells=16)
    )
    with pytest.raises(UnplaceableDemandError) as raised:
        run_scan(request, gpu_actor_without_a_check)
    line = str(raised.value)
    assert "no progress" in line and "lacks GPU" in line and "\n" not in line, line
    stored = HeatmapStore.open(str(store))  # nothing was finished as if scanned
    statuses = [stored.slide_status(s) for s in stored.list_slides()]
    assert all(status is None or status.state is not SlideState.COMPLETE for status in statuses)


GPU_HOLDER = """
import sys, ray
ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)

@ray.remote(num_gpus=1, num_cpus=0)
class GpuHolder:
    def ready(self):
        return True

holder = GpuHolder.remote()
ray.get(holder.ready.remote())
print(ray.get_runtime_context().gcs_address, ray.get_runtime_context().get_job_id(), flush=True)
sys.stdin.read()  # until the test closes our stdin
ray.shutdown()
"""


def test_a_scan_whose_gpu_another_job_holds_fails_naming_the_gpu_and_the_job(
    synth_dataset: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Gap (a) and (b): a real local Ray with one GPU, held by an actor of another job (another
    driver process). The scan's model actor fits the node's size, so nothing is unplaceable; it
    only never gets the GPU. After the test's short window the run fails in one line naming the
    GPU and the other job, not waiting forever."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", GPU_HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        address, other_job = holder.stdout.readline().split()

        @contextmanager
        def joined(run: ScanRun, placement: Placement) -> Iterator[RayExecutor]:
            with ray_session(address) as resources:
                assert resources.gpus == 1
                yield RayExecutor(run, plan_budget(resources, run.predictor, gpus=None), stall_s=2.0)

        store = tmp_path / "run.zarr"
        request = ScanRequest(
            (str(synth_dataset / "normal_001.tif"),), str(tiny_checkpoint), str(store), ScanSettings(block_cells=16)
        )
        with pytest.raises(UnplaceableDemandError) as raised:
            run_scan(request, joined)
    finally:
        holder.communicate(timeout=120)  # closes its stdin: it lets the GPU go and stops its Ray
    line = str(raised.value)
    assert "no progress" in line and "GPU is held by other work" in line and f"job {other_job}" in line, line
    assert "\n" not in line and "lacks" not in line


def test_only_this_jobs_pending_actor_counts_and_only_when_it_fits_a_node() -> None:
    ours, theirs = "02000000", "01000000"
    node, free = {"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 0.0}
    waiting = ActorEntry(ours, "Model", "PENDING_CREATION", {"CPU": 1.0, "GPU": 1.0}, 100.0)
    holding = ActorEntry(theirs, "Holder", "ALIVE", {"GPU": 1.0}, 50.0)
    line = held_by_other_work(ours, [waiting, holding], [node], [free], pending_since_s=200.0)
    assert line is not None and "GPU is held by other work (job 01000000: Holder)" in line
    # pending for less than the window; another job's pending actor; one that fits no node
    assert held_by_other_work(ours, [waiting, holding], [node], [free], pending_since_s=99.0) is None
    assert held_by_other_work(theirs, [waiting, holding], [node], [free], pending_since_s=200.0) is None
    big = ActorEntry(ours, "Model", "PENDING_CREATION", {"GPU": 2.0}, 100.0)
    assert held_by_other_work(ours, [big, holding], [node], [free], pending_since_s=200.0) is None
    # one that a node has room for (Ray is placing it), one that asks for nothing (Ray's own
    # coordinator actors): neither waits for other work
    roomy = ActorEntry(ours, "Model", "PENDING_CREATION", {"CPU": 1.0}, 100.0)
    empty = ActorEntry(ours, "_AutoscalingCoordinatorActor", "PENDING_CREATION", {}, 100.0)
    assert held_by_other_work(ours, [roomy, empty, holding], [node], [free], pending_since_s=200.0) is None
