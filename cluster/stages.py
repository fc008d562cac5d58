"""The three stages of the block pipeline as Ray Data batch functions.

Plain callables over dicts of numpy columns: Ray Data runs them (tasks for read and write, an
actor pool for predict), and nothing here calls the Ray API. Each row is one block; a failed row
carries its error text on to the driver instead of raising, so one bad slide never stops the
batch.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.settings import PredictorSettings
from pcam_scan.scan.work import BlockWork, describe_error, read_works, write_work
from pcam_scan.store.prob_chunks import ProbChunkWriter

Batch = dict[str, Any]


def pack_work(work: BlockWork) -> bytes:
    """A work item as bytes for a Ray Data column (pickle: it only travels inside the cluster)."""
    return pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)


def read_blocks(batch: Batch, geometry: PatchGeometry) -> Batch:
    """Columns `work` -> `work`, `region` (the block's uint8 H x W x 3 region, never cut into
    patches: the model stage does that where it runs), `read_s`, `error`."""
    empty = np.zeros((0, 0, 3), dtype=np.uint8)
    regions, seconds, errors = [], [], []
    unpacked = [pickle.loads(item) for item in batch["work"]]
    for _, region, read_s, error in read_works(unpacked, geometry):
        regions.append(empty if region is None else region)
        seconds.append(read_s)
        errors.append(error or "")
    return {
        "work": batch["work"],
        "region": regions,
        "read_s": np.array(seconds),
        "error": np.array(errors, dtype=object),
    }


class PredictBlocks:
    """The model on one device (a GPU, or a worker's CPUs): block regions in, P(tumour) out.

    The patches are cut here, where the model runs (on the GPU from the device copy of each
    region). Loads the checkpoint from a path every worker can read and checks that it is the
    model the run was planned with, so a file replaced mid-run cannot mix two models in one store.
    """

    def __init__(self, checkpoint_path: str, model_id: str, predictor: PredictorSettings, stride_px: int) -> None:
        from pcam_scan.errors import CheckpointError
        from pcam_scan.model.predictor import Predictor

        self.predictor = Predictor.from_checkpoint(checkpoint_path, predictor)
        self.stride_px = stride_px
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        if self.predictor.model_id != model_id:
            raise CheckpointError(f"{checkpoint_path} changed during the run (model id {self.predictor.model_id})")

    def __call__(self, batch: Batch) -> Batch:
        started = time.perf_counter()
        works: list[BlockWork] = [pickle.loads(item) for item in batch["work"]]
        readable = [not error for error in batch["error"]]
        blocks = [(region, work.tissue) for region, work, ok in zip(batch["region"], works, readable) if ok]
        outputs = iter(self.predictor.predict_blocks(blocks, self.stride_px))
        probs = [next(outputs) if ok else np.zeros(0, np.float32) for ok in readable]
        elapsed = time.perf_counter() - started
        total = max(sum(len(p) for p in probs), 1)
        stats = self.predictor.stats
        return {
            "work": batch["work"],
            "probs": probs,
            "read_s": batch["read_s"],
            "predict_s": np.array([elapsed * len(p) / total for p in probs]),
            "error": batch["error"],
            # the actor's running batch counts, for the benchmark's useful-share figure
            "model_batches": np.full(len(probs), stats.batches),
            "model_useful": np.full(len(probs), stats.useful),
            "model_actor": np.full(len(probs), self.worker, dtype=object),
        }


def write_blocks(batch: Batch, writers: Mapping[str, ProbChunkWriter]) -> Batch:
    """Write each block's chunk; return small result columns (no pixels, no probabilities)."""
    works: list[BlockWork] = [pickle.loads(item) for item in batch["work"]]
    errors = list(batch["error"])
    write_s = []
    for index, (work, probs) in enumerate(zip(works, batch["probs"])):
        seconds = 0.0
        if not errors[index]:
            try:
                seconds = write_work(writers[work.slide_id], work, np.asarray(probs))
            except Exception as err:  # recorded as the slide's failure, never swallowed
                errors[index] = describe_error(err)
        write_s.append(seconds)
    return {
        "slide_id": np.array([w.slide_id for w in works], dtype=object),
        "block_row": np.array([w.block.block_row for w in works]),
        "block_col": np.array([w.block.block_col for w in works]),
        "n_patches": np.array([0 if e else w.n_patches for w, e in zip(works, errors)]),
        "read_s": batch["read_s"],
        "predict_s": batch["predict_s"],
        "write_s": np.array(write_s),
        "error": np.array(errors, dtype=object),
        "model_batches": batch["model_batches"],
        "model_useful": batch["model_useful"],
        "model_actor": batch["model_actor"],
    }
