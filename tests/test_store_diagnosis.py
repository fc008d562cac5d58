"""Diagnoses, lesion outlines and exports from a real heatmap store over synthetic slides whose
heatmaps come from the ground truth (tests/store_cases.py): `diagnose_stored_slide`, lesion
outlines traced on the cell grid, `pcam-scan diagnose`, `export` and `fit-aggregator`, and
their one-line refusals of bad input."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pcam_scan.annotations import SlideAnnotations, rasterize_annotations, read_annotations
from pcam_scan.annotations.model import Polygon
from pcam_scan.cli import main
from pcam_scan.diagnosis import DefaultRule, Diagnosis, diagnose_heatmap, load_aggregator
from pcam_scan.diagnosis.contours import (
    cell_corners_to_l0,
    contours_as_annotations,
    lesion_contours,
    outline_cells,
    stored_slide_lesions,
    trace_rings,
)
from pcam_scan.diagnosis.record import diagnose_stored_slide
from pcam_scan.errors import StoreError
from pcam_scan.evaluation import read_tumour_mask_tiff
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.lesions import RegionSettings, find_regions, label_regions
from pcam_scan.store import HeatmapStore, SlideRecord
from pcam_scan.store.queries import match_slide_ids, read_heatmap
from tests.store_cases import RUN, Case, build_store, l0_per_cell, write_dataset

LEVEL5 = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("synth")
    return root, write_dataset(root)


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory, dataset) -> Path:
    """A near-perfect store, never written to by the tests (copy it to change it)."""
    path = tmp_path_factory.mktemp("stores") / "run.zarr"
    build_store(path, dataset[1])
    return path


@pytest.fixture
def store_copy(tmp_path: Path, clean_store: Path) -> Path:
    target = tmp_path / "run.zarr"
    shutil.copytree(clean_store, target)
    return target


def expected_category(case: Case) -> str:
    return case.plan.category.lower() if case.is_tumour else "negative"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pcam-scan: error: ") and err.count("\n") == 1, err
    return err


# -- diagnose_stored_slide ---------------------------------------------------------------------


def test_stored_slides_get_the_right_call_and_size_category(store_copy: Path, dataset) -> None:
    store = HeatmapStore.open(str(store_copy), mode="r+")
    categories = set()
    for case in dataset[1]:
        before = store.stored_slide(case.slide_id)
        diagnosis = diagnose_stored_slide(store, case.slide_id, DefaultRule())
        categories.add(diagnosis.category)
        assert diagnosis.is_positive == case.is_tumour
        assert diagnosis.category == expected_category(case)
        truth_um = max((lesion.diameter_um for lesion in case.plan.lesions), default=0.0)
        # measured over the corners of cells that are >= half tumour: within two cells of truth
        assert abs(diagnosis.largest_lesion_um - truth_um) < 2 * 32 * 0.972
        after = store.stored_slide(case.slide_id)
        assert Diagnosis.from_attrs(after.diagnosis or {}) == diagnosis
        assert after.status == before.status and after.counts == before.counts
    assert categories == {"macro", "micro", "negative"}  # the data set covers each kind


def test_an_incomplete_slide_is_not_diagnosed(store_copy: Path, dataset) -> None:
    case = dataset[1][0]
    store = HeatmapStore.open(str(store_copy), RUN, mode="a")
    store.plan_slide("in_progress", SlideRecord("x.tif", "fp"), case.grid, case.tissue, 16)
    with pytest.raises(StoreError, match="not complete"):
        diagnose_stored_slide(store, "in_progress", DefaultRule())
    assert store.stored_slide("in_progress").diagnosis is None


def test_reference_names_match_slide_ids_ignoring_case() -> None:
    matched, missing = match_slide_ids(["Test_001", "Test_009"], ["test_001", "normal_1"])
    assert matched == {"Test_001": "test_001"} and missing == ["Test_009"]
    with pytest.raises(StoreError, match="differ only in case"):
        match_slide_ids(["Test_001"], ["test_001", "TEST_001"])


# -- outlines on the cell grid -----------------------------------------------------------------


def hand_grid(rows: int, cols: int, slide_mpp: float = 0.226, label_rule: str = "pcam-any") -> CellGrid:
    """A grid whose last column of cells reaches 70% of a cell past the slide's edge."""
    l0 = 32 * 0.972 / slide_mpp
    return CellGrid(
        math.floor((cols - 0.7) * l0),
        math.floor(rows * l0),
        slide_mpp,
        0.972,
        PatchGeometry(label_rule=label_rule),
    )


def shoelace(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def cell_outlines(prob: np.ndarray, grid: CellGrid) -> dict[tuple[int, int], tuple]:
    """Cell-edge outlines of each region (the tracer on a cell mask), by the region's first cell."""
    labels, count = label_regions(prob, 0.5)
    out = {}
    for label in range(1, count + 1):
        rings = outline_cells(labels == label, keep_inside=labels > 0)
        rows, cols = np.nonzero(labels == label)
        out[(int(rows.min()), int(cols.min()))] = (
            cell_corners_to_l0(rings.outer_xy, grid),
            tuple(cell_corners_to_l0(h, grid) for h in rings.holes_xy),
        )
    return out


def holes_islands_and_corners() -> np.ndarray:
    prob = np.full((12, 12), 0.1)
    prob[1:6, 1:6] = 0.9
    prob[2:5, 2:5] = 0.2  # region A: a 5x5 ring ...
    prob[3, 3] = 0.8  # ... around region B, one cell in A's hole
    prob[7:10, 1:4] = 0.7
    prob[8, 2] = np.nan  # region C: a 3x3 ring around a cell never predicted
    prob[7, 6] = prob[8, 7] = 0.6  # region D: two cells meeting at one corner
    prob[10, 11] = 0.95  # region E: in the last column, past the slide's edge
    return prob


def test_cell_outlines_follow_cell_edges_with_holes_islands_and_corners() -> None:
    prob = holes_islands_and_corners()
    grid = hand_grid(12, 12)
    f = l0_per_cell(grid)
    by_first_cell = cell_outlines(prob, grid)
    assert len(by_first_cell) == 5
    island, _ = by_first_cell[(3, 3)]
    assert np.allclose(island, np.array([[3, 3], [4, 3], [4, 4], [3, 4]]) * f)
    ring_a, holes_a = by_first_cell[(1, 1)]
    assert np.allclose(ring_a, np.array([[1, 1], [6, 1], [6, 6], [1, 6]]) * f)
    assert holes_a == ()  # the hole holds region B: filled, not excluded
    _, holes_c = by_first_cell[(7, 1)]
    assert len(holes_c) == 1
    assert np.allclose(holes_c[0], np.array([[2, 8], [3, 8], [3, 9], [2, 9]]) * f)
    pair, _ = by_first_cell[(7, 6)]  # one ring through the shared corner (7, 8) twice
    expected = [[6, 7], [7, 7], [7, 8], [8, 8], [8, 9], [7, 9], [7, 8], [6, 8]]
    assert np.allclose(pair, np.array(expected) * f)
    edge, _ = by_first_cell[(10, 11)]
    assert edge[:, 0].max() == grid.l0_width  # clipped to the slide
    for outer, holes in by_first_cell.values():
        assert shoelace(outer) > 0
        assert all(shoelace(hole) > 0 for hole in holes)


def test_lesion_outlines_are_the_measured_sub_cell_shapes() -> None:
    prob = holes_islands_and_corners()
    grid = hand_grid(12, 12, label_rule="centre-majority")  # no inset: C's hole stays open
    contours = lesion_contours(prob, grid, RegionSettings(0.5))
    by_first_cell = {c.region.cell_bbox_rc[:2]: c for c in contours}
    # E's shape lies past the slide's edge: no lesion
    assert set(by_first_cell) == {(1, 1), (3, 3), (7, 1), (7, 6)}
    assert by_first_cell[(1, 1)].holes_l0_xy == ()  # A's hole holds B: filled
    assert len(by_first_cell[(7, 1)].holes_l0_xy) == 1  # C's unpredicted cell stays a hole
    for contour in contours:
        assert shoelace(contour.outer_l0_xy) > 0
        assert all(shoelace(hole) > 0 for hole in contour.holes_l0_xy)
        shape = contour.region.shape
        assert shape is not None
        # rasterised at the sub-cell pitch, the outline gives back the measured shape
        pitch = l0_per_cell(grid) / shape.subsamples
        origin = (shape.origin_cell_rc[1] * l0_per_cell(grid), shape.origin_cell_rc[0] * l0_per_cell(grid))
        one = contours_as_annotations([contour], "_0", "_2")
        drawn = rasterize_annotations(one, pitch, shape.mask.shape, l0_origin_xy=origin)
        # (a hole that holds another region is drawn filled)
        expected = shape.mask if contour.holes_l0_xy else ndimage.binary_fill_holes(shape.mask)
        assert np.array_equal(drawn, expected)
        if contour.holes_l0_xy:
            assert contour.region.area_mm2 == pytest.approx(
                np.count_nonzero(drawn) * grid.cell_area_mm2 / shape.subsamples**2
            )


def test_rings_of_a_mask_with_a_hole_have_opposite_orientation() -> None:
    mask = np.ones((4, 4), dtype=bool)
    mask[1:3, 1:3] = False
    outer, hole = sorted(trace_rings(mask), key=shoelace, reverse=True)
    assert shoelace(outer) == 16 and shoelace(hole) == -4
    assert len(outer) == 4 and len(hole) == 4  # collinear corners dropped


def test_slide_lesions_give_outlines_and_detections_in_level0(clean_store: Path, dataset) -> None:
    store = HeatmapStore.open(str(clean_store))
    case = dataset[1][0]
    lesions = stored_slide_lesions(store, case.slide_id)
    regions = find_regions(read_heatmap(store, case.slide_id).prob, case.grid, RegionSettings())
    assert [c.region for c in lesions.contours] == regions
    assert lesions.detections
    for detection in lesions.detections:
        row, col = case.grid.l0_to_cell(detection.l0_xy)
        assert (row, col) == detection.cell_rc and case.tumour_fraction[row, col] > 0


# -- pcam-scan export ---------------------------------------------------------------------------


def level5_shape(case: Case) -> tuple[int, int]:
    return case.grid.l0_height // LEVEL5, case.grid.l0_width // LEVEL5


@pytest.mark.parametrize(("fmt", "suffix"), [("geojson", ".geojson"), ("asap", ".xml")])
def test_export_round_trip_matches_heatmap_and_ground_truth(
    tmp_path: Path, clean_store: Path, dataset, fmt: str, suffix: str, capsys
) -> None:
    root, cases = dataset
    out = tmp_path / "export"
    assert main(["export", str(clean_store), "--format", fmt, "--out", str(out)]) == 0
    store = HeatmapStore.open(str(clean_store))
    for case in cases:
        annotations = read_annotations(out / f"{case.slide_id}{suffix}")
        prob = read_heatmap(store, case.slide_id).prob
        labels, n_regions = label_regions(prob.astype(np.float64), 0.5)
        assert len(annotations.tumour) == len(find_regions(prob, case.grid, RegionSettings()))
        if not case.is_tumour:
            assert n_regions == 0
            continue
        # sampled at cell centres, the sub-cell outlines hold the heatmap's region cells (but for
        # a few that the smoothing of the outline gains or loses at its corners)
        cells = rasterize_annotations(annotations, l0_per_cell(case.grid), case.grid.shape)
        lit = labels > 0
        assert np.count_nonzero(cells ^ lit) <= 0.1 * np.count_nonzero(lit)
        if any(lesion.exclusion_l0_xy is not None for lesion in case.plan.lesions):
            assert annotations.exclusions  # the normal island inside the lesion is a hole
        # at level 5 they cover the ground truth, lesion by lesion
        exported = rasterize_annotations(annotations, LEVEL5, level5_shape(case))
        truth = read_tumour_mask_tiff(root / "masks" / f"{case.name}_Mask.tif")
        iou = np.count_nonzero(exported & truth) / np.count_nonzero(exported | truth)
        assert iou > 0.8
        for lesion in case.plan.annotations().tumour:
            one = rasterize_annotations(SlideAnnotations(tumour=(lesion,)), LEVEL5, truth.shape)
            assert np.count_nonzero(one & exported) > 0.6 * np.count_nonzero(one)
    assert "test_001: 3 lesions" in capsys.readouterr().out


def test_geojson_export_is_qupath_annotations_with_measurements(tmp_path: Path, clean_store: Path, dataset) -> None:
    case = dataset[1][0]
    argv = ["export", str(clean_store), "--format", "geojson", "--out", str(tmp_path)]
    assert main([*argv, "--slides", case.name.upper()]) == 0  # ids ignore case
    assert [p.name for p in tmp_path.iterdir()] == [f"{case.slide_id}.geojson"]
    features = json.loads((tmp_path / f"{case.slide_id}.geojson").read_text())["features"]
    tumour = [f for f in features if f["properties"]["classification"]["name"] == "Tumor"]
    heatmap = read_heatmap(HeatmapStore.open(str(clean_store)), case.slide_id)
    labels, _ = label_regions(heatmap.prob.astype(np.float64), 0.5)
    assert len(tumour) == len(find_regions(heatmap.prob, heatmap.grid, RegionSettings()))
    for feature in tumour:
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert np.array_equal(ring[0], ring[-1])  # closed, as GeoJSON wants
        outline = SlideAnnotations(tumour=(Polygon("lesion", "Tumor", ring[:-1]),))
        inside = rasterize_annotations(outline, l0_per_cell(case.grid), case.grid.shape)
        lit = np.unique(labels[inside])
        (label,) = lit[lit > 0]  # the outline lies on one region of lit cells
        measured = properties["measurements"]
        assert set(measured) == {"area_mm2", "diameter_um", "max_prob", "mean_prob"}
        outline_mm2 = shoelace(ring[:-1]) * (case.grid.slide_mpp_um_px / 1000) ** 2
        assert 0 < measured["area_mm2"] <= outline_mm2 * (1 + 1e-9)  # holes are exclusions
        assert measured["max_prob"] == pytest.approx(float(heatmap.prob[labels == label].max()))
    largest = max(f["properties"]["measurements"]["diameter_um"] for f in tumour)
    diagnosis = diagnose_heatmap(heatmap.prob, heatmap.tissue, heatmap.grid, DefaultRule())
    assert largest == diagnosis.largest_lesion_um


def test_export_threshold_changes_the_outlines(tmp_path: Path, clean_store: Path, dataset) -> None:
    case = dataset[1][0]
    base = ["export", str(clean_store), "--format", "asap", "--slides", case.slide_id]
    assert main([*base, "--out", str(tmp_path / "a"), "--threshold", "0.5"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--threshold", "0.95"]) == 0
    loose, tight = (
        rasterize_annotations(
            read_annotations(tmp_path / folder / f"{case.slide_id}.xml"),
            l0_per_cell(case.grid),
            case.grid.shape,
        )
        for folder in ("a", "b")
    )
    assert 0 < np.count_nonzero(tight) < np.count_nonzero(loose)
    assert not np.any(tight & ~loose)


# -- pcam-scan diagnose -------------------------------------------------------------------------


def add_unfinished_slides(path: Path, case: Case) -> None:
    store = HeatmapStore.open(str(path), RUN, mode="a")
    store.plan_slide("in_progress", SlideRecord("x.tif", "fp"), case.grid, case.tissue, 16)
    store.mark_failed("broken", "cannot open slide: not a TIFF")


def read_csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["slide_id"]: row for row in csv.DictReader(handle)}


def test_diagnose_command_writes_csv_and_attributes_and_lists_unfinished_slides(
    tmp_path: Path, store_copy: Path, dataset, capsys
) -> None:
    cases = dataset[1]
    add_unfinished_slides(store_copy, cases[0])
    out = tmp_path / "reports" / "diagnoses.csv"
    code = main(["diagnose", str(store_copy), "--threshold", "0.3", "--out", str(out)])
    assert code == 1  # two slides have no diagnosis
    rows = read_csv_rows(out)
    assert set(rows) == {c.slide_id for c in cases} | {"in_progress", "broken"}
    assert (rows["broken"]["status"], rows["broken"]["message"]) == (
        "failed",
        "cannot open slide: not a TIFF",
    )
    assert rows["in_progress"]["status"] == "planned" and rows["in_progress"]["call"] == ""
    store = HeatmapStore.open(str(store_copy))
    for case in cases:
        row = rows[case.slide_id]
        stored = Diagnosis.from_attrs(store.stored_slide(case.slide_id).diagnosis or {})
        assert float(row["probability"]) == stored.probability
        assert (row["call"], row["category"]) == (stored.call, expected_category(case))
        assert float(row["threshold"]) == stored.threshold == 0.3
        area = float(row["tumour_area_mm2"])
        assert area == pytest.approx(float(row["tumour_area_mm2_ge_0.50"]))
        truth_mm2 = case.tumour_fraction.sum() * case.grid.cell_area_mm2
        assert area == pytest.approx(truth_mm2, rel=0.1, abs=1e-9)
    assert "6 slides: 2 positive, 2 negative, 0 not assessable, 2 without a diagnosis" in capsys.readouterr().out


def test_diagnose_command_refuses_bad_input_in_one_line(tmp_path: Path, store_copy: Path, capsys) -> None:
    out = str(tmp_path / "d.csv")
    assert main(["diagnose", str(tmp_path / "missing.zarr"), "--out", out]) == 2
    assert "no heatmap store" in one_line_error(capsys)
    assert main(["diagnose", str(store_copy), "--threshold", "1.5", "--out", out]) == 2
    assert "threshold 1.5" in one_line_error(capsys)
    assert main(["diagnose", str(store_copy), "--aggregator", str(tmp_path), "--out", out]) == 2
    assert "aggregator" in one_line_error(capsys)
    assert not (tmp_path / "d.csv").exists()


# -- pcam-scan fit-aggregator ----------------------------------------------------------------


def test_fit_aggregator_then_diagnose_with_it(tmp_path: Path, store_copy: Path, dataset, capsys) -> None:
    root, cases = dataset
    agg = tmp_path / "agg.json"
    argv = ["fit-aggregator", str(store_copy), "--reference", str(root / "reference.csv")]
    assert main([*argv, "--out", str(agg)]) == 0
    printed = capsys.readouterr().out
    assert "fitted on 4 slides (2 tumour, 2 normal); 2-fold CV AUC 1.0000" in printed
    aggregator = load_aggregator(agg)
    assert aggregator.training["n_slides"] == 4 and aggregator.training["cv_auc"] == 1.0
    assert "out-of-fold calibration: Brier" in printed
    assert (tmp_path / "agg_reliability.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "d.csv"
    assert main(["diagnose", str(store_copy), "--aggregator", str(agg), "--out", str(out)]) == 0
    assert "not calibrated" in capsys.readouterr().out  # the store's scan recorded no temperature
    rows = read_csv_rows(out)
    for case in cases:
        assert rows[case.slide_id]["method"] == aggregator.name
        assert rows[case.slide_id]["call"] == ("positive" if case.is_tumour else "negative")


def test_fit_aggregator_needs_two_slides_of_each_class(tmp_path: Path, clean_store: Path, capsys) -> None:
    reference = tmp_path / "reference.csv"
    reference.write_text(
        "Test_001,Tumor,IDC,Macro\nTest_002,Normal,,None\nTest_003,Tumor,IDC,Micro\nTest_099,Normal,,None\n"
    )
    argv = ["fit-aggregator", str(clean_store), "--reference", str(reference)]
    assert main([*argv, "--out", str(tmp_path / "agg.json")]) == 2
    err = one_line_error(capsys)
    assert "found 2 tumour and 1 normal" in err and "Test_099" in err
    assert not (tmp_path / "agg.json").exists()


@pytest.mark.parametrize(
    ("reference_text", "message"),
    [
        ("Test_001,Tumor,IDC\n", "expected 4 fields"),
        ("Test_001;Tumor;IDC;Macro\n", "expected 4 fields"),
        ("Test_001,Maybe,IDC,Macro\n", "label 'Maybe'"),
    ],
)
def test_fit_aggregator_refuses_a_malformed_reference(
    tmp_path: Path, clean_store: Path, reference_text: str, message: str, capsys
) -> None:
    reference = tmp_path / "reference.csv"
    reference.write_text(reference_text)
    argv = ["fit-aggregator", str(clean_store), "--reference", str(reference)]
    assert main([*argv, "--out", str(tmp_path / "agg.json")]) == 2
    assert message in one_line_error(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "{missing}", "--format", "geojson", "--out", "{tmp}/x"], "no heatmap store"),
        (
            ["export", "{store}", "--format", "geojson", "--out", "{tmp}/x", "--slides", "T_404"],
            "no slide T_404",
        ),
        (
            ["export", "{store}", "--format", "asap", "--out", "{tmp}/r.csv"],
            "is not a folder",
        ),
        (["export", "{store}", "--format", "asap", "--out", "{tmp}/x", "--threshold", "2"], "2"),
        (
            ["fit-aggregator", "{missing}", "--reference", "{tmp}/r.csv", "--out", "{tmp}/a.json"],
            "no heatmap store",
        ),
        (
            ["fit-aggregator", "{store}", "--reference", "{tmp}/none.csv", "--out", "{tmp}/a.json"],
            "no such reference file",
        ),
    ],
)
def test_bad_store_slide_or_file_is_one_line_and_exit_2(
    tmp_path: Path, clean_store: Path, argv: list[str], message: str, capsys
) -> None:
    (tmp_path / "r.csv").write_text("Test_001,Tumor,IDC,Macro\nTest_002,Normal,,None\n")
    filled = [a.format(missing=tmp_path / "missing.zarr", store=clean_store, tmp=tmp_path) for a in argv]
    assert main(filled) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "x").exists() and not (tmp_path / "a.json").exists()


def test_export_of_a_named_incomplete_slide_is_refused(store_copy: Path, dataset, tmp_path: Path, capsys) -> None:
    add_unfinished_slides(store_copy, dataset[1][0])
    argv = ["export", str(store_copy), "--format", "geojson", "--out", str(tmp_path / "x")]
    assert main([*argv, "--slides", "broken"]) == 2
    assert "not complete" in one_line_error(capsys)
    assert main(argv) == 0  # without --slides the unfinished ones are skipped and said so
    printed = capsys.readouterr().out
    assert "broken: skipped, failed: cannot open slide" in printed
    assert "in_progress: skipped, planned" in printed
