"""The device feeder on the CPU: batches filled across items (only a flush pads), items aligned to
batches of their own, the background thread that many callers share, and its failures."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.model.feeder import BackgroundFeeder, BatchPacker, BatchStats, CpuDevice
from pcam_scan.model.predictor import Predictor, PredictorSettings
from pcam_scan.model.random_model import write_random_checkpoint

PX = 8
HANG_GUARD_S = 120  # a result that never comes fails the test instead of hanging it


class RecordingScore:
    """P = mean intensity of each patch, recording the batch shapes it was given."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.shapes: list[int] = []
        self.fail_on_call = fail_on_call

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        self.shapes.append(len(patches))
        if self.fail_on_call == len(self.shapes):
            raise RuntimeError("device lost")
        return patches.float().mean(dim=(1, 2, 3)) / 255


def _items(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (n, PX, PX, 3), dtype=np.uint8) for n in sizes]


def _expected(patches: np.ndarray) -> np.ndarray:
    return (patches.astype(np.float32).mean(axis=(1, 2, 3)) / 255).astype(np.float32)


def _packer(score: RecordingScore, batch: int, *, align: bool, pad: bool = False) -> BatchPacker:
    return BatchPacker(CpuDevice(), score, batch, 3, BatchStats(batch_size=batch), PX, align_items=align, pad=pad)


SIZES = [5, 0, 13, 1, 7, 20, 3]


def test_batches_fill_across_items_and_only_the_last_is_partial() -> None:
    score = RecordingScore()
    packer = _packer(score, 8, align=False)
    items = _items(SIZES)
    results = list(packer.run((patches, None, 0) for patches in items))
    assert [len(r) for r in results] == SIZES
    for patches, probs in zip(items, results):
        np.testing.assert_allclose(probs, _expected(patches), rtol=0, atol=1e-6)
    total = sum(SIZES)
    assert score.shapes == [8] * (total // 8) + [total % 8]
    assert packer.stats.useful == total and packer.stats.batches == math.ceil(total / 8)


def test_aligned_items_get_batches_of_their_own() -> None:
    score = RecordingScore()
    packer = _packer(score, 8, align=True)
    results = list(packer.run((patches, None, 0) for patches in _items(SIZES)))
    assert [len(r) for r in results] == SIZES
    expected_shapes = [s for n in SIZES for s in [8] * (n // 8) + ([n % 8] if n % 8 else [])]
    assert score.shapes == expected_shapes


def test_padding_keeps_one_shape_and_drops_the_padding_rows() -> None:
    score = RecordingScore()
    packer = _packer(score, 8, align=True, pad=True)
    items = _items([3, 9])
    results = list(packer.run((patches, None, 0) for patches in items))
    assert set(score.shapes) == {8} and len(score.shapes) == 3
    for patches, probs in zip(items, results):
        np.testing.assert_allclose(probs, _expected(patches), rtol=0, atol=1e-6)
    assert packer.stats.useful == 12 and packer.stats.batches == 3


def test_regions_are_cut_into_their_tissue_cells_patches() -> None:
    score = RecordingScore()
    packer = _packer(score, 4, align=False)
    rng = np.random.default_rng(3)
    stride, rows, cols = 4, 3, 5
    region = rng.integers(0, 256, ((rows - 1) * stride + PX, (cols - 1) * stride + PX, 3), dtype=np.uint8)
    cells = np.array([0, 6, 7, 14], dtype=np.int64)
    (probs,) = packer.run([(region, cells, stride)])
    expected = [
        region[(c // cols) * stride : (c // cols) * stride + PX, (c % cols) * stride : (c % cols) * stride + PX]
        for c in cells
    ]
    np.testing.assert_allclose(probs, _expected(np.stack(expected)), rtol=0, atol=1e-6)


def test_the_background_feeder_serves_many_threads_and_flushes_when_input_stops() -> None:
    gate = threading.Event()  # the first batch waits until every thread has queued its items

    class GatedScore(RecordingScore):
        def __call__(self, patches: torch.Tensor) -> torch.Tensor:
            gate.wait(HANG_GUARD_S)
            return super().__call__(patches)

    feeder = BackgroundFeeder(_packer(GatedScore(), 16, align=False))
    per_thread = [_items([7, 11, 2, 30], seed) for seed in range(4)]
    futures: dict[int, list] = {}
    threads = [
        threading.Thread(target=lambda n=n: futures.__setitem__(n, [feeder.submit(p, None, 0) for p in per_thread[n]]))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_S)
    gate.set()
    for number, items in enumerate(per_thread):
        for patches, future in zip(items, futures[number], strict=True):
            np.testing.assert_allclose(future.result(timeout=HANG_GUARD_S), _expected(patches), rtol=0, atol=1e-6)
    feeder.close()
    total = sum(len(p) for items in per_thread for p in items)
    assert feeder.packer.stats.useful == total
    # full batches across the threads' items: at most one partial batch before the gate opened
    # (the queue may have run dry then), and the last one
    assert feeder.packer.stats.batches <= math.ceil(total / 16) + 1 < sum(len(items) for items in per_thread)


def _gather_in_thread(
    feeder: BackgroundFeeder, patches: np.ndarray, out: dict[str, list[np.ndarray]], key: str
) -> threading.Thread:
    """Submit here (so items queue in the test's order), wait for the result in a thread."""
    future = feeder.submit(patches, None, 0)
    thread = threading.Thread(target=lambda: out.__setitem__(key, feeder.gather([future])))
    thread.start()
    return thread


def test_the_partial_batch_goes_when_every_caller_waits_and_not_before() -> None:
    score = RecordingScore()
    # input that stops never launches a partial batch here: only the callers' rule can
    feeder = BackgroundFeeder(_packer(score, 16, align=False), callers=3, end_of_input_wait_s=1e6)
    first, second, third = _items([5, 4, 3], seed=7)
    out: dict[str, list[np.ndarray]] = {}
    waiting = [_gather_in_thread(feeder, first, out, "first"), _gather_in_thread(feeder, second, out, "second")]
    # two of three callers wait: their 9 patches stay in the partial batch until the third comes
    out["third"] = feeder.gather([feeder.submit(third, None, 0)])
    for thread in waiting:
        thread.join(HANG_GUARD_S)
    feeder.close()
    assert score.shapes == [12]  # one batch with all three callers' patches
    for key, patches in (("first", first), ("second", second), ("third", third)):
        np.testing.assert_allclose(out[key][0], _expected(patches), rtol=0, atol=1e-6)


def test_a_caller_whose_items_are_done_does_not_count_as_waiting() -> None:
    score = RecordingScore()
    feeder = BackgroundFeeder(_packer(score, 4, align=False), callers=2, end_of_input_wait_s=1e6)
    full = _items([4], seed=1)[0]
    assert len(feeder.gather([feeder.submit(full, None, 0)])[0]) == 4  # a full batch needs no rule
    done_early, split, last = _items([3, 2, 1], seed=2)
    out: dict[str, list[np.ndarray]] = {}
    first = _gather_in_thread(feeder, done_early, out, "done_early")
    second = _gather_in_thread(feeder, split, out, "split")  # fills the batch: done_early is served
    first.join(HANG_GUARD_S)
    # one caller waits for one patch; a second one makes two of two: the partial batch goes
    out["last"] = feeder.gather([feeder.submit(last, None, 0)])
    second.join(HANG_GUARD_S)
    feeder.close()
    assert score.shapes == [4, 4, 2]
    for key, patches in (("done_early", done_early), ("split", split), ("last", last)):
        np.testing.assert_allclose(out[key][0], _expected(patches), rtol=0, atol=1e-6)


def test_a_device_failure_reaches_the_items_it_touched_and_the_feeder_goes_on() -> None:
    feeder = BackgroundFeeder(_packer(RecordingScore(fail_on_call=1), 4, align=True))
    first = feeder.submit(_items([3])[0], None, 0)
    with pytest.raises(RuntimeError, match="device lost"):
        first.result(timeout=HANG_GUARD_S)
    later = _items([5], seed=1)[0]
    np.testing.assert_allclose(feeder.submit(later, None, 0).result(timeout=HANG_GUARD_S), _expected(later), atol=1e-6)
    feeder.close()
    with pytest.raises(RuntimeError, match="closed"):
        feeder.submit(later, None, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feeder") / "tiny.safetensors"
    write_random_checkpoint(path)
    return path


def _block(seed: int, rows: int = 4, cols: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 256, ((rows - 1) * 32 + 96, (cols - 1) * 32 + 96, 3), dtype=np.uint8)
    return region, rng.random((rows, cols)) < 0.7


def test_a_predictor_fills_across_blocks_unless_deterministic(tiny: Path) -> None:
    blocks = [_block(seed) for seed in range(5)]
    aligned = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", batch_size=8, cpu_threads=1))
    filled = Predictor.from_checkpoint(
        tiny, PredictorSettings(device="cpu", batch_size=8, cpu_threads=1, deterministic=False)
    )
    a = list(aligned.predict_blocks(blocks, 32))
    b = list(filled.predict_blocks(blocks, 32))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    total = sum(int(tissue.sum()) for _, tissue in blocks)
    assert filled.stats.batches == math.ceil(total / 8) < aligned.stats.batches


def test_blocks_submitted_from_threads_equal_the_streamed_ones(tiny: Path) -> None:
    predictor = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", batch_size=8, cpu_threads=1))
    blocks = [_block(seed) for seed in range(4)]
    streamed = list(predictor.predict_blocks(blocks, 32))
    futures = [predictor.submit_block(region, tissue, 32) for region, tissue in blocks]
    for expected, future in zip(streamed, futures, strict=True):
        np.testing.assert_array_equal(future.result(timeout=HANG_GUARD_S), expected)
    with pytest.raises(ConfigError, match="background"):
        list(predictor.predict_blocks(blocks, 32))
    with pytest.raises(ConfigError, match="region"):
        predictor.submit_block(blocks[0][0][:-1], blocks[0][1], 32)
