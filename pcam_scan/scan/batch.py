"""The driver of a batch scan, the same in one process and on Ray.

The executor plans each slide and sets it up in the store where the plan is made; the driver
hands the pending blocks to the executor's pipeline and, as results stream back, marks failed
slides and starts each slide's finalize on the executor as soon as its last block is written
(off the driver on Ray). The driver itself only routes small records; the executor decides
*where* planning, reads, predictions, writes and finalizes happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pcam_scan.errors import PcamScanError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.finalize import stored_outcome
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.planning import PlanFailure, PlannedSlide
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.scan.work import BlockResult, BlockWork, block_work_items
from pcam_scan.store import HeatmapStore, SlideRecord, slide_fingerprint
from pcam_scan.store.prob_chunks import ProbChunkWriter


@dataclass(frozen=True)
class SlideJob:
    """A slide to scan: its store id and its path."""

    slide_id: str
    path: str


class Executor(Protocol):
    """Where planning, block work and finalizing run: in this process, or on a Ray cluster."""

    def plan(
        self, jobs: Sequence[SlideJob], model_geometry: PatchGeometry, settings: ScanSettings, store: HeatmapStore
    ) -> Iterator[tuple[SlideJob, PlannedSlide | PlanFailure]]:
        """Each job planned and set up in the store, or why not, as each becomes ready."""
        ...

    def run(self, works: Sequence[BlockWork], writers: Mapping[str, ProbChunkWriter]) -> Iterator[BlockResult]:
        """Read, predict and write every block; yield each block's result as it finishes."""
        ...

    def finalize(self, store: HeatmapStore, job: SlideJob, seconds: Mapping[str, float], n_blocks: int) -> None:
        """Start finishing a slide whose blocks are all written (`scan.finalize.finalize_slide`)."""
        ...

    def finalized(self, wait: bool) -> Iterator[SlideOutcome]:
        """Outcomes of the finalizes that ended; with `wait`, of all those started."""
        ...


class _SlideTally:
    """Per-slide bookkeeping while its blocks stream back."""

    def __init__(self, job: SlideJob, planned: PlannedSlide) -> None:
        self.job = job
        self.n_blocks = len(planned.plan.blocks)
        self.pending = len(planned.pending)
        self.seconds = {"plan": planned.plan.plan_seconds, "read": 0.0, "predict": 0.0, "write": 0.0}
        self.failed = False

    def add(self, result: BlockResult) -> None:
        self.pending -= 1
        self.seconds["read"] += result.read_s
        self.seconds["predict"] += result.predict_s
        self.seconds["write"] += result.write_s


def _record(job: SlideJob) -> SlideRecord | None:
    try:
        return SlideRecord(path=job.path, fingerprint=slide_fingerprint(job.path))
    except PcamScanError:
        return None


def scan_batch(
    jobs: Sequence[SlideJob],
    store: HeatmapStore,
    model_geometry: PatchGeometry,
    settings: ScanSettings,
    executor: Executor,
    progress: ScanProgress | None = None,
) -> list[SlideOutcome]:
    """Scan every job into `store`; one outcome per job, in the jobs' order. Never raises for a
    bad slide: its outcome (and its status in the store) says failed, with the message."""
    progress = progress or ScanProgress()
    outcomes: dict[str, SlideOutcome] = {}
    tallies: dict[str, _SlideTally] = {}
    works: list[BlockWork] = []

    def fail(job: SlideJob, message: str) -> None:
        store.mark_failed(job.slide_id, message, _record(job))
        outcomes[job.slide_id] = SlideOutcome(job.slide_id, job.path, "failed", message)

    def finalize(tally: _SlideTally) -> None:
        executor.finalize(store, tally.job, dict(tally.seconds), tally.n_blocks)

    for job, planned in executor.plan(jobs, model_geometry, settings, store):
        if isinstance(planned, PlanFailure):
            fail(job, planned.message)
        elif planned.complete:
            outcomes[job.slide_id] = stored_outcome(store.stored_slide(job.slide_id), job.slide_id, job.path, "already complete", {})
        else:
            tallies[job.slide_id] = _SlideTally(job, planned)
            works.extend(block_work_items(planned.plan, planned.pending, settings.mpp_override_um_px))

    progress.set_totals(len(jobs), len(works), sum(w.n_patches for w in works))
    for _ in outcomes:  # failed to plan, or complete in an earlier run
        progress.slide_done()
    for tally in tallies.values():
        if tally.pending == 0:  # resumed with nothing left
            finalize(tally)

    writers = {slide_id: store.chunk_writer(slide_id) for slide_id in tallies}
    try:
        _collect(executor.run(works, writers), tallies, outcomes, executor, progress, fail, finalize)
        _record_finalized(executor.finalized(wait=True), outcomes, progress)
    finally:
        progress.close()
    for job in jobs:
        if job.slide_id not in outcomes:  # results that never came back: say so, never drop
            fail(job, "some blocks returned no result; run the scan again to resume")
    return [outcomes[job.slide_id] for job in jobs]


def _collect(
    results: Iterator[BlockResult],
    tallies: dict[str, _SlideTally],
    outcomes: dict[str, SlideOutcome],
    executor: Executor,
    progress: ScanProgress,
    fail: Callable[[SlideJob, str], None],
    finalize: Callable[[_SlideTally], None],
) -> None:
    """Count each block's result; fail a slide on its first error; start its finalize on its
    last block; pick up the finalizes that ended, without waiting for any."""
    for result in results:
        tally = tallies[result.slide_id]
        progress.block_done(result.n_patches, result.model)
        if not tally.failed and result.error is not None:
            tally.failed = True
            fail(tally.job, result.error)
            progress.slide_done()
        elif not tally.failed:
            tally.add(result)
            if tally.pending == 0:
                finalize(tally)
        _record_finalized(executor.finalized(wait=False), outcomes, progress)


def _record_finalized(done: Iterator[SlideOutcome], outcomes: dict[str, SlideOutcome], progress: ScanProgress) -> None:
    for outcome in done:
        outcomes[outcome.slide_id] = outcome
        progress.slide_done()
