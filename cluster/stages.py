"""The four stages of the scan pipeline as Ray Data batch functions.

Plain callables over dicts of numpy columns (`Columns`: what Ray Data calls a batch; "batch" in
this project means the model's batch of patches): Ray Data runs them (tasks for plan, read and write,
an actor pool for predict), and nothing here calls the Ray API. The plan stage turns one slide
into one `slide` row (its `SlideReady`, for the driver) and one `work` row per pending block;
the later stages pass slide rows through untouched. A failed row carries its error text on to
the driver instead of raising, so one bad slide never stops the batch.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from typing import Any

import numpy as np

from pcam_scan.errors import describe_error
from pcam_scan.scan.settings import ScanRun
from pcam_scan.scan.work import BlockWork, plan_slide_work, read_works, write_work
from pcam_scan.store import HeatmapStore
from pcam_scan.store.prob_chunks import ProbChunkWriter

Columns = dict[str, Any]
NO_BYTES = b""  # the empty `work` of a slide row, and the empty `slide` of a block row


def pack_work(work: BlockWork) -> bytes:
    """A work item as bytes for a Ray Data column (pickle: it only travels inside the cluster)."""
    return pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)


def plan_slides(columns: Columns, run: ScanRun, store: HeatmapStore) -> Columns:
    """Columns `slide_id`, `path` -> `work`, `slide`: each slide planned into the store, then its
    slide row and its pending blocks' work rows, which enter the pipeline at once."""
    works: list[bytes] = []
    slides: list[bytes] = []
    for slide_id, path in zip(columns["slide_id"], columns["path"]):
        ready, slide_works = plan_slide_work(str(slide_id), str(path), run, store)
        works.append(NO_BYTES)
        slides.append(pickle.dumps(ready, protocol=pickle.HIGHEST_PROTOCOL))
        works.extend(pack_work(work) for work in slide_works)
        slides.extend(NO_BYTES for _ in slide_works)
    return {"work": np.array(works, dtype=object), "slide": np.array(slides, dtype=object)}


def read_blocks(columns: Columns, run: ScanRun) -> Columns:
    """Columns `work`, `slide` -> the same plus `region` (the block's uint8 H x W x 3 region,
    never cut into patches: the model stage does that where it runs; stain-normalised when the run
    asks), `qc` (the block's pickled QC, measured here on the same region as read, before any
    normalisation; empty with QC off), `read_s` (read, QC and normalisation), `error`."""
    empty = np.zeros((0, 0, 3), dtype=np.uint8)
    is_block = [item != NO_BYTES for item in columns["work"]]
    unpacked = [pickle.loads(item) for item, block in zip(columns["work"], is_block) if block]
    reads = iter(read_works(unpacked, run))
    regions, qcs, seconds, errors = [], [], [], []
    for block in is_block:
        read = next(reads) if block else None
        regions.append(empty if read is None or read.region is None else read.region)
        qcs.append(
            NO_BYTES if read is None or read.qc is None else pickle.dumps(read.qc, protocol=pickle.HIGHEST_PROTOCOL)
        )
        seconds.append(0.0 if read is None else read.seconds)
        errors.append("" if read is None else read.error or "")
    return {
        "work": columns["work"],
        "slide": columns["slide"],
        "region": regions,
        "qc": np.array(qcs, dtype=object),
        "read_s": np.array(seconds),
        "error": np.array(errors, dtype=object),
    }


class PredictBlocks:
    """The model on one device (a GPU, or a node's CPUs): block regions in, P(tumour) out.

    The patches are cut here, where the model runs (on the GPU from the device copy of each
    region). Several calls run at once in one actor (Ray Data's concurrent calls). On a GPU each
    submits its blocks to the predictor's one background feeder and waits for them, so the
    device's batches fill across calls and stay in flight between them. On the CPU the actor
    holds `model_threads` single-thread predictors sharing one copy of the weights, which share
    out the blocks' batches (`PredictorPool`). Loads the checkpoint from a path every worker can
    read and checks that it is the model the run was planned with, so a file replaced mid-run
    cannot mix two models in one store.
    """

    def __init__(self, run: ScanRun, concurrent_calls: int, model_threads: int = 1) -> None:
        # torch: only where the model runs
        from pcam_scan.model.predictor_pool import PredictorPool
        from pcam_scan.scan.run_model import load_run_predictors

        predictors = load_run_predictors(run, model_threads)
        self.stride_px = run.geometry.stride_px
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        on_cpu = predictors[0].device.type == "cpu"
        self.pool = PredictorPool(predictors) if on_cpu else None
        # a GPU's feeder thread starts with the actor; it knows how many calls can wait on it
        self.feeder = None if on_cpu else predictors[0].background(callers=concurrent_calls)
        self.predictors = predictors

    def _score(self, blocks: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        if self.pool is not None:
            futures = [self.pool.submit_block(region, tissue, self.stride_px) for region, tissue in blocks]
            return [future.result() for future in futures]
        assert self.feeder is not None
        predictor = self.predictors[0]
        return self.feeder.gather([predictor.submit_block(region, tissue, self.stride_px) for region, tissue in blocks])

    def __call__(self, columns: Columns) -> Columns:
        started = time.perf_counter()
        works = [pickle.loads(item) if item != NO_BYTES else None for item in columns["work"]]
        readable = [work is not None and not error for work, error in zip(works, columns["error"])]
        scored = iter(
            self._score(
                [(region, work.tissue) for region, work, ok in zip(columns["region"], works, readable) if ok and work]
            )
        )
        probs = [next(scored) if ok and work else np.zeros(0, np.float32) for work, ok in zip(works, readable)]
        elapsed = time.perf_counter() - started
        total = max(sum(len(p) for p in probs), 1)
        stats = self.pool.stats if self.pool is not None else self.predictors[0].stats
        return {
            "work": columns["work"],
            "slide": columns["slide"],
            "qc": columns["qc"],
            "probs": probs,
            "read_s": columns["read_s"],
            "predict_s": np.array([elapsed * len(p) / total for p in probs]),
            "error": columns["error"],
            # the actor's running batch counts, for the benchmark's useful-share figure
            "model_batches": np.full(len(probs), stats.batches),
            "model_useful": np.full(len(probs), stats.useful),
            "model_actor": np.full(len(probs), self.worker, dtype=object),
        }


def write_blocks(columns: Columns, store: HeatmapStore) -> Columns:
    """Write each block's chunk (one writer per slide of the batch, so a slide's arrays are
    opened once per batch); return small result columns (no pixels, no probabilities)."""
    works = [pickle.loads(item) if item != NO_BYTES else None for item in columns["work"]]
    errors = list(columns["error"])
    writers: dict[str, ProbChunkWriter] = {}
    write_s = []
    for index, (work, probs, qc) in enumerate(zip(works, columns["probs"], columns["qc"])):
        seconds = 0.0
        if work is not None and not errors[index]:
            try:
                writer = writers.setdefault(work.slide_id, ProbChunkWriter(store.location, work.slide_id))
                seconds = write_work(writer, work, np.asarray(probs), pickle.loads(qc) if qc != NO_BYTES else None)
            except Exception as err:  # recorded as the slide's failure, never swallowed
                errors[index] = describe_error(err)
        write_s.append(seconds)
    return {
        "slide": columns["slide"],
        "slide_id": np.array([w.slide_id if w else "" for w in works], dtype=object),
        "block_row": np.array([w.block.block_row if w else -1 for w in works]),
        "block_col": np.array([w.block.block_col if w else -1 for w in works]),
        "n_patches": np.array([w.n_patches if w and not e else 0 for w, e in zip(works, errors)]),
        "read_s": columns["read_s"],
        "predict_s": columns["predict_s"],
        "write_s": np.array(write_s),
        "error": np.array(errors, dtype=object),
        "model_batches": columns["model_batches"],
        "model_useful": columns["model_useful"],
        "model_actor": columns["model_actor"],
    }
