"""Tissue detection on real tiles and on drawn slides: glass, pale fat and pen are not tissue."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.slide import open_slide
from pcam_scan.tissue import TissueSettings, detect_tissue, otsu_threshold, tissue_grid_from_map
from tests.slide_files import write_pyramid

SETTINGS = TissueSettings()


def _tile_cells(rgb: np.ndarray) -> np.ndarray:
    """Treat a tile as the tissue map of a slide whose cells are `px_per_cell` map px wide."""
    map_mpp = 32 * 0.972 / SETTINGS.px_per_cell
    h, w = rgb.shape[:2]
    grid = CellGrid(w, h, map_mpp, 0.972, PatchGeometry())
    return tissue_grid_from_map(rgb, map_mpp, grid, SETTINGS).cells


def _tile(realdata: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(realdata / "patches" / name).convert("RGB"))


@pytest.mark.parametrize(
    "name",
    [
        "histolab_tissue-level2-3000-7666-7096-11763.png",
        "histolab_high-nuclei-score-level2.png",
        "tiatoolbox_kather1.tif",
        "tiatoolbox_kather2.tif",
    ],
)
def test_real_tissue_tiles_have_tissue(realdata: Path, name: str) -> None:
    assert _tile_cells(_tile(realdata, name)).mean() > 0.1


@pytest.mark.parametrize("name", ["histolab_no-tissue.png", "histolab_almost-white-1.png"])
def test_real_no_tissue_tiles_have_none(realdata: Path, name: str) -> None:
    assert not _tile_cells(_tile(realdata, name)).any()


def test_tissue_is_where_the_tissue_is_in_a_real_tile(realdata: Path) -> None:
    cells = _tile_cells(_tile(realdata, "histolab_high-nuclei-score-level2.png"))
    rows, cols = cells.shape
    assert cells[: rows // 6, : cols // 3].mean() > 0.8  # tissue in the top-left corner
    assert not cells[rows // 2 :, :].any()  # glass in the lower half


def test_glass_pale_fat_and_black_pen_are_not_tissue() -> None:
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(240, 3, (256, 256, 3)), 0, 255).astype(np.uint8)
    fat = glass.copy()
    fat[..., 1] -= 8  # pale pink cast: saturation ~0.04
    pen = glass.copy()
    pen[100:140, :] = (25, 25, 30)  # a black marker stroke across the tile
    for image in (glass, fat, pen):
        assert not _tile_cells(image).any()


def test_pen_stroke_on_tissue_is_cut_out() -> None:
    image = np.full((256, 256, 3), 240, dtype=np.uint8)
    image[:, :128] = (200, 120, 170)  # H&E-like pink-purple on the left half
    image[:, 60:68] = (20, 20, 20)  # pen stroke through the tissue
    cells = _tile_cells(image)  # 4 map px per cell: tissue = cells 0-31, pen = cells 15-16
    assert cells[:, :14].all() and cells[:, 18:31].all()
    assert not cells[:, 15:17].any() and not cells[:, 33:].any()


def test_otsu_splits_two_populations() -> None:
    values = np.concatenate([np.full(1000, 0.02), np.full(1000, 0.4)])
    assert 0.02 < otsu_threshold(values) <= 0.4


@pytest.mark.parametrize("mpp", [0.243, 0.226])
def test_detect_tissue_on_a_slide_finds_the_band_and_its_area(tmp_path: Path, mpp: float) -> None:
    image = np.full((4096, 4096, 3), 242, dtype=np.uint8)
    image[1024:3072, 512:2560] = (190, 110, 160)  # 2048 x 2048 l0 px of tissue
    path = write_pyramid(tmp_path / "band.tif", image, mpp, n_levels=6)
    with open_slide(path) as slide:
        grid = CellGrid(4096, 4096, mpp, 0.972, PatchGeometry())
        tissue = detect_tissue(slide, grid)
    side_mm = 2048 * mpp / 1000
    assert tissue.area_mm2 == pytest.approx(side_mm**2, rel=0.05)
    assert tissue.cells.shape == grid.shape
    # a cell well inside the band is tissue; one well outside is not
    inside = grid.l0_to_cell((1536, 2048))
    outside = grid.l0_to_cell((3500, 500))
    assert tissue.cells[inside] and not tissue.cells[outside]
    # border cells are partly covered: between the inner and the outer square of cells
    side_cells = side_mm * 1000 / (32 * 0.972)
    assert (math.floor(side_cells) - 1) ** 2 <= tissue.cells.sum() <= (math.ceil(side_cells) + 1) ** 2
