"""The Ray executor of a batch scan: plans as CPU tasks, blocks through the Ray Data pipeline."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from pcam_scan.errors import PcamScanError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.batch import SlideJob
from pcam_scan.scan.planning import SlidePlan, plan_or_reason
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.scan.work import BlockResult, BlockWork, describe_error
from pcam_scan.store.blocks import BlockWriter

from cluster.pipeline import PoolSettings, run_block_pipeline


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

        remote_plan = ray.remote(num_cpus=1, max_retries=3)(plan_or_reason)
        pending = {remote_plan.remote(job.slide_id, job.path, model_geometry, settings): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                yield job, ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the task's worker or node was lost for good
                yield job, describe_error(getattr(err, "cause", None) or err)

    def run(self, works: Sequence[BlockWork], writers: Mapping[str, BlockWriter]) -> Iterator[BlockResult]:
        """The pipeline's results; a stage that cannot run at all (the model actors fail to
        start: no such device, a bad checkpoint) stops the run with one line, and the slides
        stay planned, to be resumed."""
        import ray

        try:
            yield from run_block_pipeline(works, writers, self.geometry, self.pool)
        except ray.exceptions.RayError as err:
            raise PcamScanError(f"the block pipeline failed: {_last_error_line(err)}") from None


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$", re.M)


def _last_error_line(err: BaseException) -> str:
    """The innermost `SomeError: message` line that Ray's wrappers carry as text (an actor's
    failed constructor reaches the driver only as the text of its traceback)."""
    found = _ERROR_LINE.findall(str(err))
    if found:
        name, message = found[-1]
        return f"{name}: {message.strip()}"
    return describe_error(err)
