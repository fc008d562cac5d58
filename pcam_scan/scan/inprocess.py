"""Run a batch scan in this process: no Ray, same functions. For tests, notebooks, debugging,
and a CPU node without a cluster.

This thread reads the blocks (one slide open at a time) and writes their results, in block
order; the model runs on a `PredictorPool`, a thread per core on the CPU (each a predictor of
the scan's fixed torch thread count, sharing one copy of the weights) that shares out each
block's batches, so the next blocks are read while the model scores the current ones and a
model-bound scan keeps every core at work to its last batch. Each block still goes to the model
in batches of its own: on the CPU the results are the Ray pipeline's, bit for bit, whichever
thread scored them. On a GPU one thread runs the model, and each block's last batch is padded
(the Ray pipeline's feeder fills batches across blocks).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from pcam_scan.errors import describe_error
from pcam_scan.model.predictor import Predictor, resolve_device
from pcam_scan.model.predictor_pool import PredictorPool
from pcam_scan.qc.block import BlockQc
from pcam_scan.scan.driver import SlideJob
from pcam_scan.scan.finalize import finalize_slide
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.run_model import load_run_predictors
from pcam_scan.scan.runner import Placement
from pcam_scan.scan.settings import ScanRun
from pcam_scan.scan.work import BlockResult, BlockWork, SlideReady, plan_slide_work, read_works, write_work
from pcam_scan.store import HeatmapStore
from pcam_scan.store.prob_chunks import ProbChunkWriter

BLOCKS_AHEAD_PER_MODEL_THREAD = 2
"""Blocks read ahead of the writes per model thread: one being scored, one waiting, so no model
thread waits for a read; each holds its region (about 4 MB for 32x32 cells of 96 px)."""


@dataclass
class _Scoring:
    """A block on its way through the model: its probabilities to come and its QC, or the read
    error that stopped it. `predict_s` runs from submission to the last of its batches."""

    probs: Future[np.ndarray] | None
    qc: BlockQc | None
    read_s: float
    error: str | None = None
    submitted: float = field(default_factory=time.perf_counter)
    predict_s: float = 0.0

    def __post_init__(self) -> None:
        if self.probs is not None:
            self.probs.add_done_callback(self._timed)

    def _timed(self, _: Future[np.ndarray]) -> None:
        self.predict_s = time.perf_counter() - self.submitted

    def done(self) -> bool:
        return self.probs is None or self.probs.done()


class InProcessExecutor:
    """Plans and scans slides one after the other in this process, the model on as many
    threads as it has `predictors` (one per thread, so each keeps batches of its own)."""

    def __init__(self, predictors: Sequence[Predictor], run: ScanRun) -> None:
        if not predictors:
            raise ValueError("an in-process scan needs at least one predictor")
        self.predictors = list(predictors)
        self.run = run
        self._finalized: list[SlideOutcome] = []

    def scan(self, jobs: Sequence[SlideJob], store: HeatmapStore) -> Iterator[SlideReady | BlockResult]:
        """Each slide planned, then its blocks scanned, one slide after the other."""
        for job in jobs:
            ready, works = plan_slide_work(job.slide_id, job.path, self.run, store)
            yield ready
            if works:
                yield from self._run(works, store.chunk_writer(job.slide_id))

    def finalize(self, store: HeatmapStore, job: SlideJob, seconds: dict[str, float], n_blocks: int) -> None:
        self._finalized.append(finalize_slide(store, job.slide_id, job.path, seconds, n_blocks))

    def finalized(self, wait: bool) -> Iterator[SlideOutcome]:
        done, self._finalized = self._finalized, []
        yield from done

    def _run(self, works: Sequence[BlockWork], writer: ProbChunkWriter) -> Iterator[BlockResult]:
        """Reads and QC here (QC on the raw pixels, before any stain normalisation), the model on the
        pool, writes here in block order."""
        stride_px = self.run.geometry.stride_px
        pool = PredictorPool(self.predictors)
        ahead = pool.size * BLOCKS_AHEAD_PER_MODEL_THREAD
        pending: deque[tuple[BlockWork, _Scoring]] = deque()
        try:
            for read in read_works(works, self.run):  # QC measured here, on the raw pixels
                if read.region is None:
                    pending.append((read.work, _Scoring(None, None, read.seconds, error=read.error)))
                else:
                    probs = pool.submit_block(read.region, read.work.tissue, stride_px)
                    pending.append((read.work, _Scoring(probs, read.qc, read.seconds)))
                while pending and (len(pending) > ahead or pending[0][1].done()):
                    yield _write(writer, *pending.popleft())
            while pending:
                yield _write(writer, *pending.popleft())
        finally:
            pool.close()


def _write(writer: ProbChunkWriter, work: BlockWork, scoring: _Scoring) -> BlockResult:
    """The block's result once its probabilities are written (or the error that stopped it)."""
    rc = work.block.block_rc
    if scoring.probs is None:
        return BlockResult(work.slide_id, rc, 0, scoring.read_s, error=scoring.error)
    try:
        probs = scoring.probs.result()
        write_s = write_work(writer, work, probs, scoring.qc)
    except Exception as err:  # the slide fails with this message; the batch goes on
        return BlockResult(work.slide_id, rc, 0, scoring.read_s, error=describe_error(err))
    return BlockResult(work.slide_id, rc, len(probs), scoring.read_s, scoring.predict_s, write_s)


def model_threads(run: ScanRun, placement: Placement) -> int:
    """Threads that run the model in this process: one per core this process may use (or per
    `--num-cpus`), each of the scan's fixed torch thread count; one on a GPU."""
    if resolve_device(run.predictor.device).type != "cpu":
        return 1
    cores = placement.num_cpus or len(os.sched_getaffinity(0))
    return max(1, cores // (run.predictor.cpu_threads or cores))


@contextmanager
def in_process_executor(run: ScanRun, placement: Placement) -> Iterator[InProcessExecutor]:
    """The executor factory for `run_scan`: the model on this process's device, on
    `model_threads` threads (`placement` names no cluster here). The scan's fixed CPU thread
    count is torch's for the run only; the caller's is restored afterwards."""
    threads = torch.get_num_threads()
    try:
        yield InProcessExecutor(load_run_predictors(run, model_threads(run, placement)), run)
    finally:
        torch.set_num_threads(threads)
