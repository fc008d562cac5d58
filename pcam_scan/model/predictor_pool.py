"""Every core of a CPU node on the model: a pool of single-thread predictors that share out
each block's batches, not whole blocks.

A scan's CPU model runs on a fixed thread count (one), so that a block's floating-point sums
do not depend on where it ran; a node's cores are used by one such predictor per core, all
sharing one copy of the weights. Sharing whole blocks between them left cores idle: a slide of
ten blocks of 30 to 400 patches ended with one thread scoring the last large block alone. Here a
block is cut into the batches it is scored in anyway (tissue cells 0..B-1, B..2B-1, ... in
row-major order, B the batch size), and each batch goes to whichever predictor is free. A
batch's patches and rows are those of the whole-block path, so the probabilities are
bit-identical whichever thread scored which batch, and to a pool of one.

Used by the in-process executor and by each CPU model actor on Ray (one actor per node, a
thread per core); a GPU has one predictor, which gets whole blocks (its feeder fills batches
across them).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import numpy as np

from pcam_scan.model.feeder import BatchStats
from pcam_scan.model.predictor import Predictor


def batch_masks(tissue: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The block's tissue mask cut into masks of at most `batch_size` tissue cells each, in
    row-major order: the cells of each batch the whole block would be scored in."""
    flat = np.flatnonzero(np.asarray(tissue, dtype=bool))
    masks = []
    for start in range(0, len(flat), batch_size):
        mask = np.zeros(np.shape(tissue), dtype=bool)
        mask.flat[flat[start : start + batch_size]] = True
        masks.append(mask)
    return masks


class PredictorPool:
    """`predictors` (one per thread, sharing weights) scoring blocks submitted from any thread.

    With more than one predictor, each block's batches are shared out among them; with one, the
    block goes whole. `close` waits for what was submitted.
    """

    def __init__(self, predictors: Sequence[Predictor]) -> None:
        if not predictors:
            raise ValueError("a predictor pool needs at least one predictor")
        self.predictors = list(predictors)
        self._idle: queue.SimpleQueue[Predictor] = queue.SimpleQueue()
        for predictor in self.predictors:
            self._idle.put(predictor)
        self._threads = ThreadPoolExecutor(len(self.predictors), thread_name_prefix="pcam-scan-model")

    @property
    def size(self) -> int:
        return len(self.predictors)

    @property
    def batch_size(self) -> int:
        return self.predictors[0].batch_size

    @property
    def stats(self) -> BatchStats:
        """Batches run and real patches in them, over every predictor of the pool."""
        return BatchStats(
            batches=sum(p.stats.batches for p in self.predictors),
            useful=sum(p.stats.useful for p in self.predictors),
            batch_size=self.batch_size,
        )

    def submit_block(self, region: np.ndarray, tissue: np.ndarray, stride_px: int) -> Future[np.ndarray]:
        """The block's P(tumour) for its tissue cells in row-major order, as `Predictor.predict_blocks`
        gives it; the future gets the first error of any of its batches instead."""
        parts = batch_masks(tissue, self.batch_size) if self.size > 1 else [np.asarray(tissue, dtype=bool)]
        futures = [self._threads.submit(self._score, region, mask, stride_px) for mask in parts]
        return _joined(futures)

    def close(self) -> None:
        """End the threads once the batches being scored are done; batches not yet started are
        dropped (their blocks' futures get `CancelledError`)."""
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _score(self, region: np.ndarray, tissue: np.ndarray, stride_px: int) -> np.ndarray:
        predictor = self._idle.get()  # never waits: a thread per predictor
        try:
            (probs,) = predictor.predict_blocks([(region, tissue)], stride_px)
            return probs
        finally:
            self._idle.put(predictor)


def _joined(parts: list[Future[np.ndarray]]) -> Future[np.ndarray]:
    """One future for the concatenation of `parts`, in order, set when the last one ends."""
    joined: Future[np.ndarray] = Future()
    joined.set_running_or_notify_cancel()  # its parts run: it cannot be cancelled itself
    if not parts:
        joined.set_result(np.zeros(0, np.float32))
        return joined
    remaining = [len(parts)]
    lock = threading.Lock()

    def part_done(_: Future[np.ndarray]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        if any(part.cancelled() for part in parts):
            joined.set_exception(CancelledError())
            return
        errors = [error for error in (part.exception() for part in parts) if error is not None]
        if errors:
            joined.set_exception(errors[0])
        else:
            joined.set_result(np.concatenate([part.result() for part in parts]))

    for part in parts:
        part.add_done_callback(part_done)
    return joined
