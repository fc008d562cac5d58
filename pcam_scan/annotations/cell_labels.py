"""Which heatmap cells hold tumour: the label of the patch centred on each cell.

The label follows the grid's `label_rule`: PCam ("pcam-any") calls a patch positive when its
centre 32 x 32 px (our cell) holds at least one pixel of tumour; "centre-majority" when tumour
covers more than half of it. The rule is written into the exported checkpoint, so lesion geometry
knows where the trained model's output switches. Two kinds of ground truth give a boolean cell grid here:
- polygons (ASAP XML, GeoJSON, NCRF): rasterised with `rasterize_annotations` (tumour minus
  exclusions) at `SUBSAMPLES_PER_CELL` pixels per cell side over the lesions' bounding box only,
  aligned to the cells, so each raster pixel falls in exactly one cell;
- a mask image at some level-0 downsample (Camelyon16's `_Mask.tif`, level 5 by default): every
  tumour mask pixel marks each cell its level-0 box overlaps.
"Touches" is measured at the raster's resolution: a cell that a lesion grazes by less than one
raster pixel (cell / 8, about 4 um) may stay negative. Pure arithmetic, no slide.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from pcam_scan.annotations import SlideAnnotations, rasterize_annotations
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import CellGrid

SUBSAMPLES_PER_CELL = 8


def cell_l0_px(grid: CellGrid) -> float:
    """Side of one cell in level-0 pixels."""
    return grid.geometry.cell_px * grid.l0_per_px


def tumour_cells_from_annotations(
    annotations: SlideAnnotations, grid: CellGrid, subsamples: int = SUBSAMPLES_PER_CELL
) -> np.ndarray:
    """Boolean (rows, cols): the cells that hold tumour (exclusions removed) at 1/`subsamples`."""
    cells = np.zeros(grid.shape, dtype=bool)
    if annotations.is_empty:
        return cells
    if subsamples < 1:
        raise ConfigError("subsamples per cell must be at least 1")
    side = cell_l0_px(grid)
    points = np.concatenate([p.l0_xy for p in annotations.tumour])
    col0 = max(0, math.floor(points[:, 0].min() / side))
    row0 = max(0, math.floor(points[:, 1].min() / side))
    col1 = min(grid.cols, math.floor(points[:, 0].max() / side) + 1)
    row1 = min(grid.rows, math.floor(points[:, 1].max() / side) + 1)
    if row1 <= row0 or col1 <= col0:
        return cells  # every lesion lies outside the slide
    raster = rasterize_annotations(
        annotations,
        side / subsamples,
        ((row1 - row0) * subsamples, (col1 - col0) * subsamples),
        l0_origin_xy=(col0 * side, row0 * side),
    )
    per_pixel = raster.reshape(row1 - row0, subsamples, col1 - col0, subsamples)
    if grid.geometry.label_rule == "centre-majority":
        per_cell = per_pixel.mean(axis=(1, 3)) > 0.5
    else:
        per_cell = per_pixel.any(axis=(1, 3))
    cells[row0:row1, col0:col1] = per_cell
    return cells


def tumour_cells_from_mask(mask: np.ndarray, mask_l0_downsample: float, grid: CellGrid) -> np.ndarray:
    """Boolean (rows, cols): cells whose level-0 box overlaps a tumour pixel of `mask`.

    The mask's pixels (level 5: 32 level-0 px, about 8 um) are too coarse to weigh how much of a
    cell they cover, so this is the "pcam-any" rule whatever the grid's rule says.

    Mask pixel (r, c) covers level-0 [c*d, (c+1)*d) x [r*d, (r+1)*d) with d the downsample.
    """
    if mask.ndim != 2:
        raise ConfigError(f"a tumour mask must be 2-D, got shape {mask.shape}")
    if not (math.isfinite(mask_l0_downsample) and mask_l0_downsample > 0):
        raise ConfigError(f"mask downsample {mask_l0_downsample} must be positive")
    cells = np.zeros(grid.shape, dtype=bool)
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return cells
    ratio = mask_l0_downsample / cell_l0_px(grid)  # cells per mask pixel
    first_r = np.floor(rows * ratio).astype(np.int64)
    first_c = np.floor(cols * ratio).astype(np.int64)
    last_r = np.ceil((rows + 1) * ratio).astype(np.int64) - 1  # last cell the open box reaches
    last_c = np.ceil((cols + 1) * ratio).astype(np.int64) - 1
    span = int(max((last_r - first_r).max(), (last_c - first_c).max())) + 1
    for dr in range(span):
        for dc in range(span):
            r = first_r + dr
            c = first_c + dc
            keep = (r <= last_r) & (c <= last_c) & (r < grid.rows) & (c < grid.cols)
            cells[r[keep], c[keep]] = True
    return cells


def tumour_in_patch(tumour_cells: np.ndarray, grid: CellGrid) -> np.ndarray:
    """Cells whose whole patch (not only the centre) overlaps a tumour cell: PCam's `tumor_patch`."""
    reach = math.ceil(grid.geometry.halo_px / grid.geometry.cell_px)
    if reach == 0:
        return tumour_cells.copy()
    grown: np.ndarray = ndimage.maximum_filter(tumour_cells, size=2 * reach + 1, mode="constant", cval=False)
    return grown
