"""The driver of a scan run over its slides, the same in one process and on Ray.

The executor plans each slide and sets it up in the store where the plan is made, and its blocks
enter the pipeline as soon as that slide is planned, while other slides are still planning: the
first prediction does not wait for the whole batch. The driver only routes the small records
that stream back: it marks failed slides and starts each slide's finalize on the executor as
soon as its last block is written (off the driver on Ray). The executor decides *where*
planning, reads, predictions, writes and finalizes happen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pcam_scan.errors import PcamScanError
from pcam_scan.scan.finalize import stored_outcome
from pcam_scan.scan.outcome import ScanLedger, SlideOutcome
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.work import BlockResult, SlideReady
from pcam_scan.store import HeatmapStore, SlideRecord, slide_fingerprint


@dataclass(frozen=True)
class SlideJob:
    """A slide to scan: its store id and its path."""

    slide_id: str
    path: str


class Executor(Protocol):
    """Where planning, block work and finalizing run: in this process, or on a Ray cluster. An
    executor is opened for one `pcam_scan.scan.settings.ScanRun` and scans with it."""

    def scan(self, jobs: Sequence[SlideJob], store: HeatmapStore) -> Iterator[SlideReady | BlockResult]:
        """Plan each job into the store and read, predict and write its pending blocks; yield
        each slide's `SlideReady` and each block's result as they finish, in any order (a block's
        result may come before its slide's `SlideReady`)."""
        ...

    def finalize(self, store: HeatmapStore, job: SlideJob, seconds: dict[str, float], n_blocks: int) -> None:
        """Start finishing a slide whose blocks are all written (`scan.finalize.finalize_slide`)."""
        ...

    def finalized(self, wait: bool) -> Iterator[SlideOutcome]:
        """Outcomes of the finalizes that ended; with `wait`, of all those started."""
        ...


class _SlideTally:
    """Per-slide bookkeeping while its blocks stream back."""

    def __init__(self, job: SlideJob, ready: SlideReady) -> None:
        self.job = job
        self.n_blocks = ready.n_blocks
        self.pending = ready.n_pending
        self.seconds = {"plan": ready.plan_s, "read": 0.0, "predict": 0.0, "write": 0.0}
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


class _RunDriver:
    """Routes a run's stream of slide and block records: tallies, failures, finalizes."""

    def __init__(
        self,
        jobs: Sequence[SlideJob],
        store: HeatmapStore,
        executor: Executor,
        progress: ScanProgress,
        ledger: ScanLedger,
    ) -> None:
        self.jobs = {job.slide_id: job for job in jobs}
        self.store = store
        self.executor = executor
        self.progress = progress
        self.ledger = ledger
        self.tallies: dict[str, _SlideTally] = {}
        self.early: dict[str, list[BlockResult]] = {}  # results that came before their slide's plan

    def fail(self, job: SlideJob, message: str) -> None:
        self.store.mark_failed(job.slide_id, message, _record(job))
        self._settle(SlideOutcome(job.slide_id, job.path, "failed", message))

    def slide_ready(self, ready: SlideReady) -> None:
        job = self.jobs[ready.slide_id]
        if ready.failure is not None:
            self.fail(job, ready.failure)
        elif ready.complete:
            self.settle_complete(job)
        else:
            tally = self.tallies[job.slide_id] = _SlideTally(job, ready)
            self.progress.add_work(ready.n_pending, ready.n_patches)
            if tally.pending == 0:  # resumed with nothing left
                self._finalize(tally)
            for result in self.early.pop(job.slide_id, []):
                self.block_done(result)

    def settle_complete(self, job: SlideJob) -> None:
        self._settle(complete_outcome(self.store, job))

    def block_done(self, result: BlockResult) -> None:
        tally = self.tallies.get(result.slide_id)
        if tally is None:
            self.early.setdefault(result.slide_id, []).append(result)
            return
        self.progress.block_done(result.n_patches, result.model)
        if not tally.failed and result.error is not None:
            tally.failed = True
            self.fail(tally.job, result.error)
        elif not tally.failed:
            tally.add(result)
            if tally.pending == 0:
                self._finalize(tally)

    def _finalize(self, tally: _SlideTally) -> None:
        self.executor.finalize(self.store, tally.job, dict(tally.seconds), tally.n_blocks)

    def record_finalized(self, wait: bool) -> None:
        for outcome in self.executor.finalized(wait):
            self._settle(outcome)

    def _settle(self, outcome: SlideOutcome) -> None:
        self.ledger.settle(outcome)
        self.progress.slide_done()


def complete_outcome(store: HeatmapStore, job: SlideJob) -> SlideOutcome:
    """The outcome of a slide the store already holds complete."""
    return stored_outcome(store.stored_slide(job.slide_id), job.slide_id, job.path, "already complete", {})


def already_complete(jobs: Sequence[SlideJob], store: HeatmapStore) -> frozenset[str]:
    """The jobs' slides that `store` holds complete for this run and the same file: a batch run
    again settles them without planning, model or executor (a finished batch starts no Ray)."""
    complete = set()
    for job in jobs:
        record = _record(job)
        if record is not None and store.is_complete_for(job.slide_id, record.fingerprint):
            complete.add(job.slide_id)
    return frozenset(complete)


def scan_slides(
    jobs: Sequence[SlideJob],
    store: HeatmapStore,
    executor: Executor | None,
    progress: ScanProgress | None = None,
    ledger: ScanLedger | None = None,
    complete: frozenset[str] = frozenset(),
) -> list[SlideOutcome]:
    """Scan every job into `store`; one outcome per job, in the jobs' order. Never raises for a
    bad slide: its outcome (and its status in the store) says failed, with the message. The
    `ledger` holds the outcomes as they come, also when the run raises. The slides in
    `complete` (`already_complete`) are settled from the store and never reach the executor,
    which may be None when that is every slide."""
    todo = [job for job in jobs if job.slide_id not in complete]
    if todo and executor is None:
        raise ValueError("slides left to scan need an executor")
    progress = progress or ScanProgress()
    progress.set_totals(len(jobs), 0, 0)
    ledger = ledger or ScanLedger()
    ledger.begin(job.slide_id for job in jobs)
    for job in jobs:
        if job.slide_id in complete:
            ledger.settle(complete_outcome(store, job))
            progress.slide_done()
    if executor is None:
        progress.close()
        return [ledger.outcomes[job.slide_id] for job in jobs]
    driver = _RunDriver(jobs, store, executor, progress, ledger)
    try:
        for record in executor.scan(todo, store):
            if isinstance(record, SlideReady):
                driver.slide_ready(record)
            else:
                driver.block_done(record)
            driver.record_finalized(wait=False)
        driver.record_finalized(wait=True)
    finally:
        progress.close()
    for job in jobs:
        if job.slide_id not in ledger.outcomes:  # results that never came back: say so, never drop
            driver.fail(job, "some blocks returned no result; run the scan again to resume")
    return [ledger.outcomes[job.slide_id] for job in jobs]
