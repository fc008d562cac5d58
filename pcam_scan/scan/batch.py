"""The driver of a batch scan, the same in one process and on Ray.

It plans every slide, records plans in the store, hands the pending blocks to an executor (in
process, or the Ray Data pipeline), and, as results stream back, marks failed slides and
finalizes each slide as soon as its last block is written. The executor only decides *where*
reads, predictions and writes happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pcam_scan.diagnosis.rule import DefaultRule
from pcam_scan.diagnosis.store_io import diagnose_stored_slide
from pcam_scan.errors import PcamScanError, describe_error
from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.planning import PlanFailure, SlidePlan
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.scan.work import BlockResult, BlockWork, block_work_items
from pcam_scan.store import HeatmapStore, SlideRecord, slide_fingerprint
from pcam_scan.store.prob_chunks import ProbChunkWriter
from pcam_scan.store.schema import SlideState, StoredSlide


@dataclass(frozen=True)
class SlideJob:
    """A slide to scan: its store id and its path."""

    slide_id: str
    path: str


class Executor(Protocol):
    """Where planning and block work run: in this process, or on a Ray cluster."""

    def plan(
        self, jobs: Sequence[SlideJob], model_geometry: PatchGeometry, settings: ScanSettings
    ) -> Iterator[tuple[SlideJob, SlidePlan | PlanFailure]]:
        """Each job's plan, or why it could not be planned, as each plan becomes ready."""
        ...

    def run(self, works: Sequence[BlockWork], writers: Mapping[str, ProbChunkWriter]) -> Iterator[BlockResult]:
        """Read, predict and write every block; yield each block's result as it finishes."""
        ...


class _SlideTally:
    """Per-slide bookkeeping while its blocks stream back."""

    def __init__(self, job: SlideJob, plan: SlidePlan, pending: int) -> None:
        self.job = job
        self.plan = plan
        self.pending = pending
        self.seconds = {"plan": plan.plan_seconds, "read": 0.0, "predict": 0.0, "write": 0.0}
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

    for job, plan in executor.plan(jobs, model_geometry, settings):
        if isinstance(plan, PlanFailure):
            fail(job, plan.message)
            continue
        try:
            record = SlideRecord(path=job.path, fingerprint=slide_fingerprint(job.path))
            status = store.plan_slide(
                job.slide_id, record, plan.grid, plan.tissue.cells, settings.block_cells
            )
            pending = [] if status.state is SlideState.COMPLETE else store.pending_blocks(job.slide_id)
        except PcamScanError as err:
            fail(job, describe_error(err))
            continue
        if status.state is SlideState.COMPLETE:
            stored = store.stored_slide(job.slide_id)
            outcomes[job.slide_id] = _outcome(stored, job, "already complete", {})
            continue
        tallies[job.slide_id] = _SlideTally(job, plan, len(pending))
        works.extend(block_work_items(plan, pending, settings.mpp_override_um_px))

    progress.set_totals(len(jobs), len(works), sum(w.n_patches for w in works))
    for _ in outcomes:  # failed to plan, or complete in an earlier run
        progress.slide_done()
    for slide_id in [s for s, t in tallies.items() if t.pending == 0]:
        outcomes[slide_id] = _finalize(store, tallies[slide_id])  # resumed with nothing left
        progress.slide_done()

    writers = {slide_id: store.chunk_writer(slide_id) for slide_id in tallies}
    try:
        _collect(executor.run(works, writers), tallies, outcomes, store, progress, fail)
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
    store: HeatmapStore,
    progress: ScanProgress,
    fail: Callable[[SlideJob, str], None],
) -> None:
    """Count each block's result; fail a slide on its first error; finalize it on its last block."""
    for result in results:
        tally = tallies[result.slide_id]
        progress.block_done(result.n_patches)
        if tally.failed:
            continue
        if result.error is not None:
            tally.failed = True
            fail(tally.job, result.error)
            progress.slide_done()
            continue
        tally.add(result)
        if tally.pending == 0:
            outcomes[result.slide_id] = _finalize(store, tally)
            progress.slide_done()


def _finalize(store: HeatmapStore, tally: _SlideTally) -> SlideOutcome:
    """Pyramid and status complete (written last) for a slide whose blocks are all written, then
    the default-rule diagnosis (an aggregator can replace it later with `pcam-scan diagnose`)."""
    job = tally.job
    try:
        stored = store.finalize_slide(job.slide_id, tally.seconds, {"blocks": len(tally.plan.blocks)})
        diagnosis = diagnose_stored_slide(store, job.slide_id, DefaultRule())
    except PcamScanError as err:
        message = describe_error(err)
        store.mark_failed(job.slide_id, message)
        return SlideOutcome(job.slide_id, job.path, "failed", message)
    return _outcome(stored, job, "complete", tally.seconds, diagnosis.to_attrs())


def _outcome(
    stored: StoredSlide,
    job: SlideJob,
    state: str,
    seconds: Mapping[str, float],
    diagnosis: Mapping[str, object] | None = None,
) -> SlideOutcome:
    return SlideOutcome(
        job.slide_id,
        job.path,
        state,
        None,
        int(stored.counts.get("predicted_cells", 0)),
        float(stored.counts.get("tissue_mm2", 0.0)),
        dict(seconds),
        dict(diagnosis if diagnosis is not None else stored.diagnosis or {}),
    )
