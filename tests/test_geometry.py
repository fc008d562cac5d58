"""PCam geometry: every coordinate recomputed by hand at both Camelyon16 scanner MPPs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import CellGrid, PatchGeometry, block_at, block_grid_shape, plan_blocks
from pcam_scan.model.patch_cutting import cut_patches, cut_tissue_patches, tissue_cell_index

PCAM = PatchGeometry()


def test_pcam_defaults_are_the_dataset_geometry() -> None:
    assert (PCAM.patch_px, PCAM.label_px, PCAM.mpp_um_px, PCAM.stride_px) == (96, 32, 0.972, 32)
    assert PCAM.cell_px == 32 and PCAM.halo_px == 32
    grid = CellGrid(9720, 9720, 0.243, 0.972, PCAM)
    assert grid.cell_um == pytest.approx(31.104) and grid.cell_area_mm2 == pytest.approx(0.031104**2)


@pytest.mark.parametrize(
    "kwargs",
    [dict(stride_px=16), dict(stride_px=128), dict(stride_px=33), dict(label_px=128), dict(mpp_um_px=0.0)],
)
def test_inconsistent_geometry_is_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PatchGeometry(**kwargs)


def test_grid_at_0_243_uses_level_2_as_is_exact_factor_4() -> None:
    grid = CellGrid(100_000, 200_000, 0.243, 0.972, PCAM)
    assert grid.l0_per_px == pytest.approx(4.0)
    # 100000 l0 px = 25000 read px = 781.25 cells -> 782; 200000 -> 50000 px -> 1562.5 -> 1563
    assert grid.shape == (1563, 782)
    # cell (row 10, col 20): cell starts at read px (640, 320); the patch at (608, 288)..(704, 384)
    assert grid.patch_px_box((10, 20)) == (608, 288, 704, 384)
    assert grid.patch_l0_box((10, 20)) == pytest.approx((2432, 1152, 2816, 1536))
    assert grid.cell_l0_box((10, 20)) == pytest.approx((2560, 1280, 2688, 1408))
    assert grid.cell_center_l0((10, 20)) == pytest.approx((2624, 1344))
    # the first patch hangs 32 read px = 128 l0 px over the top-left edge
    assert grid.patch_l0_box((0, 0)) == pytest.approx((-128, -128, 256, 256))


def test_grid_at_0_226_maps_through_the_exact_ratio() -> None:
    grid = CellGrid(97_792, 221_184, 0.226, 0.972, PCAM)
    ratio = 0.972 / 0.226
    assert grid.l0_per_px == pytest.approx(ratio)
    assert grid.cols == math.ceil(97_792 / ratio / 32)
    assert grid.rows == math.ceil(221_184 / ratio / 32)
    x0, y0, x1, y1 = grid.patch_l0_box((3, 7))
    assert (x0, y0) == pytest.approx(((7 * 32 - 32) * ratio, (3 * 32 - 32) * ratio))
    assert (x1 - x0, y1 - y0) == pytest.approx((96 * ratio, 96 * ratio))
    # a patch covers 96 px * 0.972 um = 93.312 um whatever the scanner
    assert (x1 - x0) * 0.226 == pytest.approx(93.312)


@pytest.mark.parametrize("slide_mpp", [0.243, 0.226])
def test_l0_to_cell_inverts_cell_centres(slide_mpp: float) -> None:
    grid = CellGrid(50_000, 40_000, slide_mpp, 0.972, PCAM)
    for cell_rc in [(0, 0), (5, 9), (grid.rows - 1, grid.cols - 1)]:
        assert grid.l0_to_cell(grid.cell_center_l0(cell_rc)) == cell_rc


def test_coarser_stride_makes_bigger_cells_with_centred_patches() -> None:
    geometry = PatchGeometry(stride_px=64)
    grid = CellGrid(8192, 8192, 0.243, 0.972, geometry)
    assert geometry.halo_px == 16
    assert grid.shape == (32, 32)
    assert grid.patch_px_box((1, 1)) == (48, 48, 144, 144)


def test_blocks_cover_the_grid_and_clip_at_the_edge() -> None:
    grid = CellGrid(70 * 128, 40 * 128, 0.243, 0.972, PCAM)  # 40 rows x 70 cols of cells
    assert grid.shape == (40, 70)
    assert block_grid_shape(grid, 32) == (2, 3)
    last = block_at(grid, (1, 2), 32)
    assert (last.cell_row0, last.cell_col0, last.n_rows, last.n_cols) == (32, 64, 8, 6)
    assert last.region_px_box(PCAM) == (64 * 32 - 32, 32 * 32 - 32, 6 * 32 + 64, 8 * 32 + 64)
    with pytest.raises(ConfigError):
        block_at(grid, (2, 0), 32)


def test_only_blocks_with_tissue_are_planned() -> None:
    grid = CellGrid(70 * 128, 40 * 128, 0.243, 0.972, PCAM)
    tissue = np.zeros(grid.shape, dtype=bool)
    tissue[35, 68] = True
    tissue[3, 3] = True
    planned = [b.block_rc for b in plan_blocks(grid, tissue, 32)]
    assert planned == [(0, 0), (1, 2)]


def test_patches_are_strided_views_centred_on_their_cells() -> None:
    grid = CellGrid(4 * 128, 3 * 128, 0.243, 0.972, PCAM)
    block = block_at(grid, (0, 0), 32)
    _, _, width, height = block.region_px_box(PCAM)
    # encode each region pixel's own coordinates so every patch can be located exactly
    yy, xx = np.mgrid[0:height, 0:width]
    region = np.stack([yy % 256, xx % 256, (yy // 256) * 16 + xx // 256], axis=-1).astype(np.uint8)
    patches = cut_patches(region, block, PCAM)
    assert patches.shape == (3, 4, 96, 96, 3)
    assert np.shares_memory(patches, region)  # a view, not a copy
    for i, j in [(0, 0), (2, 3), (1, 2)]:
        # patch (i, j) starts at region px (32 j, 32 i): cell origin minus the 32 px halo
        assert patches[i, j, 0, 0, 0] == (32 * i) % 256 and patches[i, j, 0, 0, 1] == (32 * j) % 256
        # the centre 32 px of the patch is the cell itself
        assert patches[i, j, 32, 32, 0] == 32 * (i + 1) % 256
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = mask[2, 0] = True
    # the model stage's cut (torch, on whatever device holds the region) gathers the same pixels
    batch = cut_tissue_patches(torch.from_numpy(region), torch.from_numpy(tissue_cell_index(mask)), 96, 32)
    assert tuple(batch.shape) == (2, 96, 96, 3) and batch.is_contiguous()
    np.testing.assert_array_equal(batch[0].numpy(), patches[1, 2])
    np.testing.assert_array_equal(batch[1].numpy(), patches[2, 0])
