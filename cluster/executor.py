"""The Ray executor of a batch scan: plans as CPU tasks, blocks through the Ray Data pipeline."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from pcam_scan.errors import PcamScanError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.batch import SlideJob
from pcam_scan.scan.planning import SlidePlan, plan_slide
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.scan.work import BlockResult, BlockWork, describe_error
from pcam_scan.store.blocks import BlockWriter

from cluster.pipeline import PoolSettings, run_block_pipeline


def _plan_or_reason(job: SlideJob, model_geometry: PatchGeometry, settings: ScanSettings) -> SlidePlan | str:
    try:
        return plan_slide(job.slide_id, job.path, model_geometry, settings)
    except PcamScanError as err:
        return describe_error(err)


class RayExecutor:
    """Plans every slide in parallel (one CPU task each, paths shipped, slides opened there) and
    runs the blocks on the Ray Data pipeline."""

    def __init__(self, geometry: PatchGeometry, pool: PoolSettings) -> None:
        self.geometry = geometry
        self.pool = pool

    def plan(
        self, jobs: Sequence[SlideJob], model_geometry: PatchGeometry, settings: ScanSettings
    ) -> Iterator[tuple[SlideJob, SlidePlan | str]]:
        import ray

        remote_plan = ray.remote(num_cpus=1, max_retries=3)(_plan_or_reason)
        pending = {remote_plan.remote(job, model_geometry, settings): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                yield job, ray.get(ready[0])
            except ray.exceptions.RayError as err:
                yield job, describe_error(err)

    def run(self, works: Sequence[BlockWork], writers: Mapping[str, BlockWriter]) -> Iterator[BlockResult]:
        return run_block_pipeline(works, writers, self.geometry, self.pool)
