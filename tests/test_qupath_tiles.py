"""`pcam-scan export --format qupath-tiles`: the heatmap as QuPath tile objects, checked against
the store (every tissue cell of the level once, with the store's value) and against QuPath's
reader conventions (FeatureCollection, objectType tile, measurements as an object, level-0 px)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.annotations.qupath_tiles import MEASUREMENT, default_tiles_level
from pcam_scan.cli import main
from pcam_scan.defaults import QUPATH_TILES_MAX_FEATURES
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.store import HeatmapStore
from pcam_scan.store.pyramid import pyramid_shapes
from tests.scanned_store import ScannedSlide, build_store


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScannedSlide]:
    # top_cells 8: a 44 x 58 cell grid gets levels 0-3, so coarser tiles are exercised
    store, slides = build_store(tmp_path_factory.mktemp("tiles"), top_cells=8)
    return store, slides[0]


def _export(store: Path, out: Path, *extra: str) -> list[dict]:  # type: ignore[type-arg]
    assert main(["export", str(store), "--format", "qupath-tiles", "--out", str(out), *extra]) == 0
    (path,) = out.iterdir()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        doc = json.load(handle)
    assert doc["type"] == "FeatureCollection"
    features: list[dict] = doc["features"]  # type: ignore[type-arg]
    return features


def _tile_cell(feature: dict, grid: CellGrid, level: int) -> tuple[int, int]:  # type: ignore[type-arg]
    """The level-`level` cell of a tile, from the level-0 cell at its top-left corner."""
    x0, y0 = feature["geometry"]["coordinates"][0][0]
    row, col = grid.l0_to_cell((x0 + 0.01, y0 + 0.01))
    return row // 2**level, col // 2**level


@pytest.mark.parametrize("level", [0, 1, 3])
def test_every_tissue_cell_of_the_level_is_one_tile_with_the_store_s_value(
    scanned: tuple[Path, ScannedSlide], tmp_path: Path, level: int
) -> None:
    store_path, slide = scanned
    expected = HeatmapStore.open(str(store_path)).read_prob(slide.slide_id, level)
    features = _export(store_path, tmp_path, "--level", str(level))
    assert len(features) == np.count_nonzero(np.isfinite(expected))
    seen = np.zeros(expected.shape, dtype=bool)
    for feature in features:
        props = feature["properties"]
        assert props["objectType"] == "tile" and props["isLocked"] is True
        assert "classification" not in props  # QuPath refuses one without a colour
        assert list(props["measurements"]) == [MEASUREMENT]
        row, col = _tile_cell(feature, slide.grid, level)
        assert not seen[row, col]
        seen[row, col] = True
        assert np.float32(props["measurements"][MEASUREMENT]) == expected[row, col]
    assert np.array_equal(seen, np.isfinite(expected))


def test_tiles_are_closed_squares_in_level_0_px_covering_their_cells(
    scanned: tuple[Path, ScannedSlide], tmp_path: Path
) -> None:
    store_path, slide = scanned
    grid = slide.grid
    side_l0 = 2 * grid.geometry.cell_px * grid.l0_per_px  # level 1: 2 x 2 cells of 41.472 px
    for feature in _export(store_path, tmp_path, "--level", "1"):
        assert feature["geometry"]["type"] == "Polygon"
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert ring.shape == (5, 2) and np.array_equal(ring[0], ring[-1])
        width, height = np.ptp(ring[:, 0]), np.ptp(ring[:, 1])
        x1, y1 = ring[:, 0].max(), ring[:, 1].max()
        assert x1 <= grid.l0_width and y1 <= grid.l0_height
        # a full tile is 2 cells wide; one at the slide's right or bottom edge is clipped there
        assert width == pytest.approx(side_l0, abs=2e-3) or x1 == grid.l0_width
        assert height == pytest.approx(side_l0, abs=2e-3) or y1 == grid.l0_height


def test_gzip_holds_the_same_features_and_is_smaller(scanned: tuple[Path, ScannedSlide], tmp_path: Path) -> None:
    store_path, slide = scanned
    plain = _export(store_path, tmp_path / "plain", "--level", "0")
    zipped = _export(store_path, tmp_path / "gz", "--level", "0", "--gzip")
    assert zipped == plain
    assert (tmp_path / "gz" / f"{slide.slide_id}.tiles.geojson.gz").stat().st_size < (
        tmp_path / "plain" / f"{slide.slide_id}.tiles.geojson"
    ).stat().st_size / 3


def test_an_existing_file_is_kept_without_overwrite(scanned: tuple[Path, ScannedSlide], tmp_path: Path) -> None:
    store_path, slide = scanned
    target = tmp_path / f"{slide.slide_id}.tiles.geojson"
    target.write_text("a pathologist's file\n")
    assert main(["export", str(store_path), "--format", "qupath-tiles", "--out", str(tmp_path)]) == 2
    assert target.read_text() == "a pathologist's file\n"


def test_a_level_the_slide_lacks_is_one_line(
    scanned: tuple[Path, ScannedSlide], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path, _ = scanned
    argv = ["export", str(store_path), "--format", "qupath-tiles", "--out", str(tmp_path), "--level", "9"]
    assert main(argv) == 2
    assert "levels 0-3, not --level 9" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_default_level_keeps_a_camelyon16_size_slide_under_the_feature_budget() -> None:
    # about 100k x 200k px at 0.243 um/px: 781 x 1562 cells of 32 px at 0.972 um/px
    grid = CellGrid(100_000, 200_000, 0.243, 0.972, PatchGeometry())
    shapes = pyramid_shapes(grid.shape)
    level = default_tiles_level(shapes, QUPATH_TILES_MAX_FEATURES)
    rows, cols = shapes[level]
    assert rows * cols <= QUPATH_TILES_MAX_FEATURES < shapes[level - 1][0] * shapes[level - 1][1]
    assert level == 2  # 196 x 391 cells, as defaults.QUPATH_TILES_MAX_FEATURES says


def test_the_default_level_of_a_small_slide_is_level_0(scanned: tuple[Path, ScannedSlide], tmp_path: Path) -> None:
    store_path, slide = scanned
    features = _export(store_path, tmp_path)
    assert len(features) == np.count_nonzero(np.isfinite(slide.prob))
