"""Lesion regions and point detections on hand-drawn heatmaps, checked against hand arithmetic.

PCam grid used here: slide 0.243 um/px, read plane 0.972 um/px, 32 px cells, so one cell is
128 level-0 px and 31.104 um on a side.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.lesions import (
    DetectionSettings,
    RegionSettings,
    detect_points,
    find_regions,
    smooth_nan_aware,
)

CELL_UM = 32 * 0.972
CELL_L0 = 128


def pcam_grid(rows: int, cols: int) -> CellGrid:
    return CellGrid(cols * CELL_L0, rows * CELL_L0, 0.243, 0.972, PatchGeometry())


def test_grid_cell_is_31_um_and_128_l0_px():
    grid = pcam_grid(4, 4)
    assert grid.shape == (4, 4)
    assert grid.cell_center_l0((0, 0)) == pytest.approx((64.0, 64.0))
    assert grid.cell_area_mm2 == pytest.approx((CELL_UM / 1000) ** 2)


def test_regions_area_diameter_centroid_by_hand():
    prob = np.zeros((10, 12), dtype=np.float32)
    prob[1:4, 2:4] = 0.8  # block of 3 rows x 2 cols
    prob[6, 6] = 0.9  # two cells touching only diagonally: one region with 8-connectivity
    prob[7, 7] = 0.7
    regions = find_regions(prob, pcam_grid(10, 12), RegionSettings(threshold=0.5))
    assert len(regions) == 2
    block, diagonal = regions  # largest area first
    assert block.n_cells == 6
    assert block.area_mm2 == pytest.approx(6 * (CELL_UM / 1000) ** 2)
    # corners span 3 x 2 cells: the diagonal of that rectangle
    assert block.diameter_um == pytest.approx(math.hypot(3, 2) * CELL_UM)
    # mean row 2, mean col 2.5 -> cell-centre (2.5, 3.0) in cells -> x 384, y 320 level-0 px
    assert block.centroid_l0_xy == pytest.approx((3.0 * CELL_L0, 2.5 * CELL_L0))
    assert block.cell_bbox_rc == (1, 2, 4, 4)
    assert diagonal.n_cells == 2
    assert diagonal.diameter_um == pytest.approx(2 * math.sqrt(2) * CELL_UM)
    assert diagonal.max_prob == pytest.approx(0.9)
    assert diagonal.mean_prob == pytest.approx(0.8)


def test_single_cell_measures_its_diagonal():
    prob = np.zeros((5, 5), dtype=np.float32)
    prob[2, 2] = 1.0
    (region,) = find_regions(prob, pcam_grid(5, 5), RegionSettings())
    assert region.diameter_um == pytest.approx(math.sqrt(2) * CELL_UM)  # about 44 um


def test_region_threshold_is_inclusive_and_nan_never_counts():
    prob = np.full((4, 4), np.nan, dtype=np.float32)
    prob[0, 0] = 0.5
    prob[3, 3] = 0.49
    regions = find_regions(prob, pcam_grid(4, 4), RegionSettings(threshold=0.5))
    assert [r.n_cells for r in regions] == [1]
    regions_at_zero = find_regions(prob, pcam_grid(4, 4), RegionSettings(threshold=0.0))
    assert sorted(r.n_cells for r in regions_at_zero) == [1, 1]


def test_heatmap_of_the_wrong_shape_is_refused():
    with pytest.raises(StoreError, match="does not match the cell grid"):
        find_regions(np.zeros((3, 3), dtype=np.float32), pcam_grid(4, 4), RegionSettings())


@pytest.mark.parametrize(
    "make",
    [
        lambda: RegionSettings(threshold=1.5),
        lambda: DetectionSettings(sigma_cells=-1),
        lambda: DetectionSettings(threshold=float("nan")),
        lambda: DetectionSettings(min_distance_cells=0.5),
    ],
)
def test_bad_settings_are_refused(make):
    with pytest.raises(ConfigError):
        make()


def test_nan_aware_smoothing_keeps_a_constant_map_constant():
    prob = np.full((12, 12), 0.6)
    prob[:, 6:] = np.nan  # right half not predicted
    prob[3, 2] = np.nan
    smoothed = smooth_nan_aware(prob, sigma_cells=2.0)
    finite = np.isfinite(prob)
    assert np.array_equal(np.isfinite(smoothed), finite)
    # a NaN-blind filter would pull the cells next to the NaN half towards 0
    assert np.allclose(smoothed[finite], 0.6)


def test_detections_are_cell_centres_in_level0_highest_first():
    prob = np.zeros((8, 16), dtype=np.float32)
    prob[2, 2] = 0.8
    prob[2, 10] = 0.9
    prob[6, 14] = 0.3  # below the threshold
    found = detect_points(prob, pcam_grid(8, 16), DetectionSettings(sigma_cells=0, threshold=0.5))
    assert [d.cell_rc for d in found] == [(2, 10), (2, 2)]
    assert [d.confidence for d in found] == pytest.approx([0.9, 0.8])
    assert found[0].l0_xy == pytest.approx((10.5 * CELL_L0, 2.5 * CELL_L0))


def test_minimum_distance_suppresses_the_weaker_neighbour():
    prob = np.zeros((6, 10), dtype=np.float32)
    prob[2, 2] = 0.9
    prob[2, 4] = 0.8  # two cells apart
    grid = pcam_grid(6, 10)
    far = detect_points(prob, grid, DetectionSettings(sigma_cells=0, min_distance_cells=3))
    assert [d.cell_rc for d in far] == [(2, 2)]
    near = detect_points(prob, grid, DetectionSettings(sigma_cells=0, min_distance_cells=1.5))
    assert [d.cell_rc for d in near] == [(2, 2), (2, 4)]


def test_a_plateau_gives_one_detection():
    prob = np.zeros((6, 6), dtype=np.float32)
    prob[2:4, 2:4] = 0.7
    found = detect_points(prob, pcam_grid(6, 6), DetectionSettings(sigma_cells=0, min_distance_cells=2))
    assert [d.cell_rc for d in found] == [(2, 2)]


def test_smoothing_lowers_a_lone_cell_below_the_threshold():
    prob = np.zeros((9, 9), dtype=np.float32)
    prob[4, 4] = 0.9
    grid = pcam_grid(9, 9)
    assert detect_points(prob, grid, DetectionSettings(sigma_cells=2.0, threshold=0.5)) == []
    blob = np.zeros((9, 9), dtype=np.float32)
    blob[2:7, 2:7] = 0.9
    (peak,) = detect_points(blob, grid, DetectionSettings(sigma_cells=1.0, threshold=0.5))
    assert peak.cell_rc == (4, 4)
    assert 0.5 < peak.confidence < 0.9
