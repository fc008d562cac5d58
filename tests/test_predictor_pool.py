"""A pool of single-thread predictors shares out each block's batches, with the whole-block bits."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.errors import ConfigError
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.cpu_inference import cpu_inference_model
from pcam_scan.model.names import TINY_CNN
from pcam_scan.model.predictor import Predictor
from pcam_scan.model.predictor_pool import PredictorPool, batch_masks
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.model.settings import PredictorSettings

STRIDE = 32
PATCH = 96


def _predictors(checkpoint: Path, count: int, batch_size: int) -> list[Predictor]:
    loaded = cpu_inference_model(load_checkpoint(checkpoint))
    settings = PredictorSettings(device="cpu", cpu_threads=1, batch_size=batch_size)
    return [Predictor(loaded, settings) for _ in range(count)]


def _block(seed: int, rows: int = 6, cols: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 256, ((rows - 1) * STRIDE + PATCH, (cols - 1) * STRIDE + PATCH, 3), dtype=np.uint8)
    return region, rng.random((rows, cols)) < 0.7


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "tiny.safetensors"
    write_random_checkpoint(path, TINY_CNN)
    return path


def test_batch_masks_hold_the_blocks_tissue_cells_in_row_major_runs_of_the_batch_size() -> None:
    tissue = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=bool)
    masks = batch_masks(tissue, 3)
    assert [int(m.sum()) for m in masks] == [3, 3, 2]
    flat = np.flatnonzero(tissue)
    assert [list(np.flatnonzero(m)) for m in masks] == [list(flat[:3]), list(flat[3:6]), list(flat[6:])]
    assert batch_masks(np.zeros((2, 2), bool), 3) == []


def test_a_pool_gives_each_block_the_bits_of_one_predictor_scoring_it_whole(tiny: Path) -> None:
    blocks = [_block(seed) for seed in range(5)]
    (alone,) = _predictors(tiny, 1, batch_size=8)
    expected = [next(alone.predict_blocks([block], STRIDE)) for block in blocks]
    pool = PredictorPool(_predictors(tiny, 3, batch_size=8))
    try:
        futures = [pool.submit_block(region, tissue, STRIDE) for region, tissue in blocks]
        for future, want in zip(futures, expected):
            np.testing.assert_array_equal(future.result(), want)
    finally:
        pool.close()
    stats = pool.stats
    assert stats.useful == sum(len(p) for p in expected)
    assert stats.batches == sum(len(batch_masks(tissue, 8)) for _, tissue in blocks)


def test_every_thread_of_the_pool_scores_part_of_one_block(tiny: Path) -> None:
    """One block of many batches keeps every predictor of the pool busy, not one."""
    predictors = _predictors(tiny, 2, batch_size=2)
    scorers: set[str] = set()
    for predictor in predictors:
        original = predictor.predict_blocks

        def recording(blocks, stride_px, original=original):  # type: ignore[no-untyped-def]
            scorers.add(threading.current_thread().name)
            return original(blocks, stride_px)

        predictor.predict_blocks = recording  # type: ignore[method-assign]
    region, tissue = _block(7, rows=8, cols=8)
    pool = PredictorPool(predictors)
    try:
        assert len(pool.submit_block(region, tissue, STRIDE).result()) == int(tissue.sum())
    finally:
        pool.close()
    assert len(scorers) == 2
    assert all(p.stats.batches > 0 for p in predictors)


def test_a_malformed_block_fails_its_own_future_and_the_pool_goes_on(tiny: Path) -> None:
    pool = PredictorPool(_predictors(tiny, 2, batch_size=4))
    try:
        region, tissue = _block(1)
        bad = pool.submit_block(region[:-1], tissue, STRIDE)
        good = pool.submit_block(region, tissue, STRIDE)
        with pytest.raises(ConfigError, match="needs a uint8 region"):
            bad.result()
        assert len(good.result()) == int(tissue.sum())
        empty = pool.submit_block(region, np.zeros_like(tissue), STRIDE)
        assert empty.result().shape == (0,)
    finally:
        pool.close()
