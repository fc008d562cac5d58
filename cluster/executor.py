"""The Ray executor of a batch scan: plans as CPU tasks, blocks through the Ray Data pipeline.

`ray_executor` is the executor factory the entry points hand to `pcam_scan.scan.runner.run_scan`:
it joins (or starts) Ray for the run and sizes the pipeline from the cluster's resources.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cluster.pipeline import run_scan_pipeline, settle_ray_data
from cluster.session import ray_session
from cluster.sizing import PipelineBudget, check_feasible, plan_budget, worker_pool_size
from cluster.watchdog import AUTOSCALING_STALL_S, POLL_S, STALL_S, StallGuard, watched
from pcam_scan.errors import ConfigError, PcamScanError, describe_error
from pcam_scan.scan.driver import SlideJob
from pcam_scan.scan.finalize import finalize_slide
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.runner import Placement
from pcam_scan.scan.settings import ScanRun
from pcam_scan.scan.work import BlockResult, SlideReady
from pcam_scan.store import HeatmapStore


class RayExecutor:
    """Runs the scan pipeline on Ray Data: slides plan in parallel CPU tasks (paths shipped,
    slides opened there) and their blocks stream on to the model as each slide is planned."""

    def __init__(self, run: ScanRun, budget: PipelineBudget, stall_s: float = STALL_S) -> None:
        self.run = run
        self.budget = budget
        self._finalizing: dict[Any, SlideJob] = {}  # Ray object ref -> its slide
        self.guard = StallGuard(stall_s)  # a demand no node can host fails the run (cluster.watchdog)

    def scan(self, jobs: Sequence[SlideJob], store: HeatmapStore) -> Iterator[SlideReady | BlockResult]:
        """The pipeline's records; a stage that cannot run at all (the model actors fail to
        start: no such device, a bad checkpoint) stops the run with one line, and the slides
        stay planned, to be resumed."""
        import ray

        slides = [(job.slide_id, job.path) for job in jobs]
        self.guard.progressed()
        try:
            yield from watched(run_scan_pipeline(slides, store, self.run, self.budget), self.guard)
        except ray.exceptions.RayError as err:
            raise PcamScanError(f"the scan pipeline failed: {_last_error_line(err)}") from None
        finally:
            settle_ray_data()  # before the session ends

    def finalize(self, store: HeatmapStore, job: SlideJob, seconds: dict[str, float], n_blocks: int) -> None:
        """A Ray task per slide (pyramid, diagnosis), from the write reserve: off the driver."""
        import ray

        remote = ray.remote(num_cpus=self.budget.cpus_per_write, max_retries=3)(finalize_slide)
        self._finalizing[remote.remote(store, job.slide_id, job.path, dict(seconds), n_blocks)] = job

    def finalized(self, wait: bool) -> Iterator[SlideOutcome]:
        import ray

        if not self._finalizing:
            return
        refs = list(self._finalizing)
        ready = self._wait_all(refs) if wait else ray.wait(refs, num_returns=len(refs), timeout=0)[0]
        for ref in ready:
            job = self._finalizing.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as err:  # its worker or node was lost for good
                yield SlideOutcome(job.slide_id, job.path, "failed", describe_error(getattr(err, "cause", None) or err))

    def _wait_all(self, refs: list[Any]) -> list[Any]:
        """Every ref, once ended; while none ends, the guard looks (a finalize no node can host)."""
        import ray

        ready: list[Any] = []
        while refs:
            done, refs = ray.wait(refs, num_returns=len(refs), timeout=POLL_S)
            if done:
                self.guard.progressed()
                ready += done
            else:
                self.guard.check()
        return ready


@contextmanager
def ray_executor(run: ScanRun, placement: Placement) -> Iterator[RayExecutor]:
    """The executor factory for `run_scan`: a Ray session for the run, the pipeline sized to it."""
    predictor = run.predictor
    local_cpus = placement.num_cpus or os.cpu_count() or 1
    with ray_session(placement.address, placement.num_cpus, worker_pool_size(local_cpus)) as resources:
        if predictor.device.startswith("cuda") and resources.gpus < 1 and placement.gpus is None:
            raise ConfigError(
                f"--device {predictor.device}: the Ray cluster has no GPUs (add --gpus N to wait for some)"
            )
        budget = plan_budget(resources, predictor, placement.gpus)
        check_feasible(budget, resources, waiting_for_gpus=placement.gpus is not None)
        yield RayExecutor(run, budget, STALL_S if placement.gpus is None else AUTOSCALING_STALL_S)


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$", re.M)


def _last_error_line(err: BaseException) -> str:
    """The innermost `SomeError: message` line that Ray's wrappers carry as text (an actor's
    failed constructor reaches the driver only as the text of its traceback)."""
    found = _ERROR_LINE.findall(str(err))
    if found:
        name, message = found[-1]
        return f"{name}: {message.strip()}"
    return describe_error(err)
