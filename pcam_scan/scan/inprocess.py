"""Run a batch scan in this process: no Ray, same functions. For tests, notebooks, debugging,
and a CPU node without a cluster.

This thread reads the blocks (one slide open at a time) and writes their results, in block
order; the model runs in a pool of threads, one per core on the CPU (each a predictor of the
scan's fixed torch thread count, sharing one copy of the weights), so the next blocks are read
while the model scores the current ones and a model-bound scan keeps every core at work. Each
block still goes to the model in batches of its own: on the CPU the results are the Ray
pipeline's, bit for bit, whichever thread scored them. On a GPU one thread runs the model, and
each block's last batch is padded (the Ray pipeline's feeder fills batches across blocks).
"""

from __future__ import annotations

import os
import queue
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from pcam_scan.errors import describe_error
from pcam_scan.model.predictor import Predictor, resolve_device
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


@dataclass(frozen=True)
class _Scored:
    """A block after the model: its probabilities and QC, or the error that stopped it."""

    probs: np.ndarray | None
    qc: BlockQc | None
    read_s: float
    predict_s: float = 0.0
    error: str | None = None


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
        idle: queue.SimpleQueue[Predictor] = queue.SimpleQueue()
        for predictor in self.predictors:
            idle.put(predictor)
        stride_px = self.run.geometry.stride_px

        def score(work: BlockWork, region: np.ndarray, qc: BlockQc | None, read_s: float) -> _Scored:
            started = time.perf_counter()
            try:
                predictor = idle.get()  # never waits: a pool thread per predictor
                try:
                    (probs,) = predictor.predict_blocks([(region, work.tissue)], stride_px)
                finally:
                    idle.put(predictor)
                return _Scored(probs, qc, read_s, time.perf_counter() - started)
            except Exception as err:  # the slide fails with this message; the batch goes on
                return _Scored(None, None, read_s, error=describe_error(err))

        threads = len(self.predictors)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="pcam-scan-model")
        pending: deque[tuple[BlockWork, Future[_Scored]]] = deque()
        try:
            for read in read_works(works, self.run):  # QC measured here, on the raw pixels
                if read.region is None:
                    failed: Future[_Scored] = Future()
                    failed.set_result(_Scored(None, None, read.seconds, error=read.error))
                    pending.append((read.work, failed))
                else:
                    pending.append((read.work, pool.submit(score, read.work, read.region, read.qc, read.seconds)))
                while pending and (len(pending) > threads * BLOCKS_AHEAD_PER_MODEL_THREAD or pending[0][1].done()):
                    yield _write(writer, *pending.popleft())
            while pending:
                yield _write(writer, *pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _write(writer: ProbChunkWriter, work: BlockWork, scored: Future[_Scored]) -> BlockResult:
    """The block's result once its probabilities are written (or the error that stopped it)."""
    done = scored.result()
    rc = work.block.block_rc
    if done.probs is None:
        return BlockResult(work.slide_id, rc, 0, done.read_s, error=done.error)
    try:
        write_s = write_work(writer, work, done.probs, done.qc)
    except Exception as err:  # the slide fails with this message; the batch goes on
        return BlockResult(work.slide_id, rc, 0, done.read_s, error=describe_error(err))
    return BlockResult(work.slide_id, rc, len(done.probs), done.read_s, done.predict_s, write_s)


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
