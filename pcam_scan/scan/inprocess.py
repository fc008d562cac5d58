"""Run a batch scan in this process: no Ray, same functions. For tests, notebooks, debugging.

Blocks go to the model one at a time, so on a GPU each block's last batch is padded (the Ray
pipeline's feeder fills batches across blocks); on the CPU, where each block gets batches of its
own anyway, the results are the Ray pipeline's, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from pcam_scan.errors import describe_error
from pcam_scan.model.predictor import Predictor
from pcam_scan.scan.driver import SlideJob
from pcam_scan.scan.finalize import finalize_slide
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.run_model import load_run_predictor
from pcam_scan.scan.runner import Placement
from pcam_scan.scan.settings import ScanRun
from pcam_scan.scan.work import BlockResult, BlockWork, SlideReady, plan_slide_work, read_works, write_work
from pcam_scan.store import HeatmapStore
from pcam_scan.store.prob_chunks import ProbChunkWriter


class InProcessExecutor:
    """Plans and scans slides one after the other with one predictor in this process."""

    def __init__(self, predictor: Predictor, run: ScanRun) -> None:
        self.predictor = predictor
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
        stride_px = self.run.geometry.stride_px
        for read in read_works(works, self.run):
            work, rc = read.work, read.work.block.block_rc
            if read.region is None:
                yield BlockResult(work.slide_id, rc, 0, read.seconds, error=read.error)
                continue
            started = time.perf_counter()
            try:
                (probs,) = self.predictor.predict_blocks([(read.region, work.tissue)], stride_px)
                predict_s = time.perf_counter() - started
                write_s = write_work(writer, work, probs, read.qc)
            except Exception as err:  # the slide fails with this message; the batch goes on
                yield BlockResult(work.slide_id, rc, 0, read.seconds, error=describe_error(err))
                continue
            yield BlockResult(work.slide_id, rc, len(probs), read.seconds, predict_s, write_s)


@contextmanager
def in_process_executor(run: ScanRun, placement: Placement) -> Iterator[InProcessExecutor]:
    """The executor factory for `run_scan`: the model on this process's device (`placement`
    names no cluster here). The scan's fixed CPU thread count is torch's for the run only; the
    caller's is restored afterwards."""
    threads = torch.get_num_threads()
    try:
        yield InProcessExecutor(load_run_predictor(run), run)
    finally:
        torch.set_num_threads(threads)
