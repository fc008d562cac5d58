"""Blocks of cells: which to scan, and how one region read becomes all the block's patches.

A block is read as ONE region (its cells plus a halo) and every 96 px patch is cut from it as a
strided view: no copy, and never one `read_region` per patch.
"""

from __future__ import annotations

import numpy as np

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import Block, CellGrid, PatchGeometry, block_at, block_grid_shape


def plan_blocks(grid: CellGrid, tissue_cells: np.ndarray, block_cells: int = 32) -> list[Block]:
    """The blocks that hold at least one tissue cell, in row-major order."""
    if tissue_cells.shape != grid.shape:
        raise ConfigError(f"tissue grid {tissue_cells.shape} does not match cell grid {grid.shape}")
    n_brows, n_bcols = block_grid_shape(grid, block_cells)
    blocks = []
    for b_row in range(n_brows):
        for b_col in range(n_bcols):
            block = block_at(grid, (b_row, b_col), block_cells)
            if tissue_cells[block.cell_slices()].any():
                blocks.append(block)
    return blocks


def cut_patches(region: np.ndarray, block: Block, geometry: PatchGeometry) -> np.ndarray:
    """All patches of a block as a read-only strided view, shape (n_rows, n_cols, P, P, 3).

    `region` is the block's region read at the read plane, exactly `block.region_px_box` in size.
    Patch (i, j) is centred on the block's cell (i, j).
    """
    _, _, width, height = block.region_px_box(geometry)
    if region.shape[:2] != (height, width) or region.ndim != 3:
        raise ConfigError(f"region {region.shape} does not match block region {height}x{width}")
    p = geometry.patch_px
    s = geometry.stride_px
    windows = np.lib.stride_tricks.sliding_window_view(region, (p, p), axis=(0, 1))
    # windows: (H-p+1, W-p+1, 3, p, p) -> every stride-th window, channels last
    picked = windows[::s, ::s]
    if picked.shape[:2] != (block.n_rows, block.n_cols):
        raise ConfigError("internal: patch grid does not match the block's cells")
    return picked.transpose(0, 1, 3, 4, 2)


def tissue_patches(
    region: np.ndarray, block: Block, geometry: PatchGeometry, tissue_cells: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The block's tissue patches as one contiguous uint8 (N, P, P, 3) batch, and their mask.

    `tissue_cells` is the block's (n_rows, n_cols) slice of the tissue grid; the returned mask
    tells where each patch's prediction goes back in the block.
    """
    patches = cut_patches(region, block, geometry)
    mask = np.asarray(tissue_cells, dtype=bool)
    return np.ascontiguousarray(patches[mask]), mask
