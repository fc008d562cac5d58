"""Lesion regions and point detections on hand-drawn heatmaps, checked against hand arithmetic.

PCam grid used here: slide 0.243 um/px, read plane 0.972 um/px, 32 px cells, so one cell is
128 level-0 px and 31.104 um on a side.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcam_scan.annotations import Polygon, SlideAnnotations
from pcam_scan.annotations.cell_labels import tumour_cells_from_annotations
from pcam_scan.diagnosis.rule import size_category
from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.lesions import (
    DetectionSettings,
    RegionSettings,
    detect_points,
    find_regions,
    smooth_nan_aware,
)
from pcam_scan.synth.regular_lesions import regular_lesion

CELL_UM = 32 * 0.972
CELL_L0 = 128


def pcam_grid(rows: int, cols: int) -> CellGrid:
    return CellGrid(cols * CELL_L0, rows * CELL_L0, 0.243, 0.972, PatchGeometry())


def test_grid_cell_is_31_um_and_128_l0_px():
    grid = pcam_grid(4, 4)
    assert grid.shape == (4, 4)
    assert grid.cell_center_l0((0, 0)) == pytest.approx((64.0, 64.0))
    assert grid.cell_area_mm2 == pytest.approx((CELL_UM / 1000) ** 2)


def rule_grid(rows: int, cols: int, rule: str) -> CellGrid:
    return CellGrid(cols * CELL_L0, rows * CELL_L0, 0.243, 0.972, PatchGeometry(label_rule=rule))


@pytest.mark.parametrize(("rule", "lesion_cells"), [("centre-majority", 10), ("pcam-any", 9)])
def test_square_region_measures_the_lesion_behind_it_by_label_rule(rule, lesion_cells):
    # 10 x 10 lit cells: under the majority rule the lesion is those cells; under PCam's rule the
    # output lights half a cell past the lesion all round, so the lesion is 9 x 9 cells
    prob = np.zeros((24, 24), dtype=np.float32)
    prob[6:16, 7:17] = 1.0
    (region,) = find_regions(prob, rule_grid(24, 24, rule), RegionSettings(threshold=0.5))
    assert region.n_cells == 100
    assert region.cell_bbox_rc == (6, 7, 16, 17)
    side_um = lesion_cells * CELL_UM
    assert region.area_mm2 == pytest.approx((side_um / 1000) ** 2, rel=0.03)
    # the smoothing rounds the corners, so a square's diagonal comes out about 27 um short
    assert region.diameter_um == pytest.approx(math.sqrt(2) * side_um, abs=35)
    assert region.diameter_um < math.sqrt(2) * side_um
    # centre of cells 6..15 x 7..16: cell-centre (10.5, 11.5), in level 0 x 12 * 128, y 11 * 128
    assert region.centroid_l0_xy == pytest.approx((12.0 * CELL_L0, 11.0 * CELL_L0), abs=1.0)


@pytest.mark.parametrize("rule", ["pcam-any", "centre-majority"])
@pytest.mark.parametrize(
    ("kind", "diameter_um", "category"),
    [
        ("disc", 150.0, "itc"),
        ("disc", 260.0, "micro"),
        ("ellipse", 240.0, "micro"),
    ],
)
def test_synthetic_lesion_diameter_matches_its_known_size(rule, kind, diameter_um, category):
    # an ideal detector: every cell outputs its training label under the rule
    grid = rule_grid(20, 20, rule)
    lesion = regular_lesion(kind, diameter_um, (1290.0, 1251.0), 0.4, 0.243)
    truth = SlideAnnotations(tumour=(Polygon("lesion", "Tumor", lesion.l0_xy),))
    prob = tumour_cells_from_annotations(truth, grid, subsamples=32).astype(np.float32)
    (region,) = find_regions(prob, grid, RegionSettings())
    assert region.diameter_um == pytest.approx(diameter_um, abs=25)
    assert region.area_mm2 == pytest.approx(lesion.area_mm2, rel=0.25)
    assert size_category(region.diameter_um) == category


def test_single_cell_stays_a_small_lesion():
    prob = np.zeros((5, 5), dtype=np.float32)
    prob[2, 2] = 1.0
    for rule in ("pcam-any", "centre-majority"):
        (region,) = find_regions(prob, rule_grid(5, 5, rule), RegionSettings())
        assert 0 < region.diameter_um < CELL_UM * math.sqrt(2)
        assert region.centroid_l0_xy == pytest.approx((2.5 * CELL_L0, 2.5 * CELL_L0), abs=8)


def test_diagonal_cells_are_one_region_with_their_probabilities():
    prob = np.zeros((10, 12), dtype=np.float32)
    prob[6, 6] = 0.9  # two cells touching only diagonally: one region with 8-connectivity
    prob[7, 7] = 0.7
    regions = find_regions(prob, pcam_grid(10, 12), RegionSettings(threshold=0.5))
    assert {r.label for r in regions} == {1}
    assert all(r.n_cells == 2 for r in regions)
    assert regions[0].max_prob == pytest.approx(0.9)
    assert regions[0].mean_prob == pytest.approx(0.8)


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
