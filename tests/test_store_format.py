"""The committed store of format version 1 (tests/data/store-v1) still opens, and a scan of its
slide with its checkpoint still writes the same heatmap: the same keys, grid, tissue and cells,
and probabilities the same up to how float32 convolutions round on another CPU.

The fixture was written by the code of commit daba6c2 (see tests/data/README.md), so this is the
guard that refactors of the scan, the store or the commands change no heatmap and no store key.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.cli import main
from pcam_scan.diagnosis.record import stored_diagnosis
from pcam_scan.store import HeatmapStore, SlideState

FIXTURE = Path(__file__).parent / "data" / "store-v1"
SLIDE_ID = "tumor_001"
MODEL_ID = "421537741702cac86fd246634488cf6c9311ae80b3db4fbecb41972187a74c36"
SETTINGS_HASH = "sha256:6d2cd4f7683101be9fcf5da77e7ded465982fb0f54c830fe36e819031dea74e7"
# The scan that made the fixture's store (tests/data/README.md), less the paths.
SCAN_OPTIONS = ["--in-process", "--device", "cpu", "--deterministic", "--block-cells", "16"]
CROSS_CPU_ATOL = 2e-6
"""How far a rescan's probabilities may lie from the committed ones. Float32 convolutions round
differently on different CPUs (oneDNN and ATen pick kernels by instruction set): between the
2-core AMD EPYC that wrote the fixture and a 2-core Intel Xeon with AVX-512, 1.8e-7 at most (and
4.2e-7 for the model of commit 3b47b99 on its own fixture), in about half the cells. On one
machine a scan is bit for bit the same whatever its path or threads (tests/test_scan.py); a
changed read, cut, resample or model moves a probability by orders of magnitude more."""


def prob_levels(store: HeatmapStore) -> list[np.ndarray]:
    return [store.read_prob(SLIDE_ID, level) for level in range(len(store.prob_level_shapes(SLIDE_ID)))]


def test_the_committed_version_1_store_opens_and_reads_as_it_was_written() -> None:
    store = HeatmapStore.open(str(FIXTURE / "store"))
    assert store.list_slides() == [SLIDE_ID]
    status = store.slide_status(SLIDE_ID)
    assert status is not None and status.state is SlideState.COMPLETE

    stored = store.stored_slide(SLIDE_ID)
    assert (stored.model_id, stored.settings_hash) == (MODEL_ID, SETTINGS_HASH)
    assert stored.record.path == "tumor_001.tif"
    assert stored.record.fingerprint.startswith("ends-sha256:177438:")
    assert dict(stored.counts) == {
        "blocks": 4,
        "predicted_cells": 516,
        "tissue_cells": 516,
        "tissue_mm2": 0.499208749056,
    }
    assert set(stored.seconds) == {"plan", "read", "predict", "write"}

    grid = store.read_grid(SLIDE_ID)
    assert (grid.l0_width, grid.l0_height, grid.rows, grid.cols) == (1056, 1056, 33, 33)
    assert (grid.slide_mpp_um_px, grid.px_mpp_um_px) == (0.972, 0.972)
    assert (grid.geometry.patch_px, grid.geometry.stride_px, grid.geometry.label_rule) == (96, 32, "pcam-any")
    assert store.block_cells(SLIDE_ID) == 16
    assert len(store.planned_blocks(SLIDE_ID)) == 4 and store.pending_blocks(SLIDE_ID) == []

    diagnosis = stored_diagnosis(store, SLIDE_ID)
    assert diagnosis is not None
    assert (diagnosis.call, diagnosis.category, diagnosis.method) == ("positive", "micro", "default-rule:top_k_mean")
    assert diagnosis.probability == 0.8747726202011108
    assert diagnosis.largest_lesion_um == 798.811339008154

    levels = prob_levels(store)
    assert [level.shape for level in levels] == [(33, 33)]
    prob, tissue = levels[0], store.read_tissue(SLIDE_ID)
    assert prob.dtype == np.float32 and tissue.dtype == np.bool_
    assert np.array_equal(~np.isnan(prob), tissue) and int(tissue.sum()) == 516
    assert math.isclose(float(np.nanmax(prob)), 0.8996568322181702, rel_tol=0, abs_tol=1e-7)


def test_scanning_the_committed_slide_again_writes_the_committed_heatmap(tmp_path: Path) -> None:
    slide = tmp_path / "tumor_001.tif"
    shutil.copyfile(FIXTURE / "tumor_001.tif", slide)
    out = tmp_path / "run.zarr"
    argv = ["scan", str(slide), "--model", str(FIXTURE / "tiny.safetensors"), "--store", str(out)]
    assert main([*argv, *SCAN_OPTIONS]) == 0

    committed = HeatmapStore.open(str(FIXTURE / "store"))
    fresh = HeatmapStore.open(str(out))
    old, new = committed.stored_slide(SLIDE_ID), fresh.stored_slide(SLIDE_ID)
    assert (new.model_id, new.settings_hash) == (old.model_id, old.settings_hash) == (MODEL_ID, SETTINGS_HASH)
    assert new.record.fingerprint == old.record.fingerprint
    assert fresh.read_grid(SLIDE_ID) == committed.read_grid(SLIDE_ID)
    assert np.array_equal(fresh.read_tissue(SLIDE_ID), committed.read_tissue(SLIDE_ID))
    old_levels, new_levels = prob_levels(committed), prob_levels(fresh)
    assert len(new_levels) == len(old_levels)
    for level, (was, now) in enumerate(zip(old_levels, new_levels)):
        assert was.dtype == now.dtype and was.shape == now.shape, level
        assert np.array_equal(np.isnan(was), np.isnan(now)), f"prob level {level}: other cells scored"
        np.testing.assert_allclose(now, was, rtol=0, atol=CROSS_CPU_ATOL, err_msg=f"prob level {level}")
    # the scan's own (default-rule) diagnosis is the one `pcam-scan diagnose` stored: the same
    # call, category and lesions, its numbers as close as the probabilities they come from
    (new_words, new_numbers), (old_words, old_numbers) = _split_numbers(new.diagnosis), _split_numbers(old.diagnosis)
    assert new_words == old_words
    assert new_numbers == pytest.approx(old_numbers, rel=0, abs=CROSS_CPU_ATOL)
    assert dict(new.counts) == dict(old.counts)


def _split_numbers(record: Mapping[str, object] | None) -> tuple[dict[str, object], dict[str, float]]:
    """A diagnosis record, flattened (`features.max_prob`), as its keys, strings and flags on one
    side and its floating-point numbers on the other."""
    flat: dict[str, object] = {}

    def walk(node: Mapping[str, object], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(record or {}, "")
    numbers = {k: v for k, v in flat.items() if isinstance(v, float)}
    return {k: v for k, v in flat.items() if k not in numbers}, numbers
