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
from cluster.watchdog import Demand, UnplaceableDemandError, unplaceable
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
