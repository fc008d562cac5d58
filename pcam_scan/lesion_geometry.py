"""Sub-cell lesion geometry: a region's shape from the probability field between cell centres.

A heatmap value belongs to the CENTRE of its cell (the centre of the patch it was predicted
from), so the staircase of whole positive cells overstates every lesion by about half a cell all
round. Instead, the field is interpolated bilinearly between cell centres and sampled at
`subsamples` points per cell side; the lesion is where the interpolated field is at or above the
threshold (the iso-contour of marching squares, rasterised), lightly smoothed as a shape.
Between a positive and a negative cell centre the boundary then falls where the field crosses
the threshold, which for a hard 0/1 output is midway: an unbiased estimate of where the model's output switches.

Where the output switches depends on how the model's label was defined (`LabelRule`):
- "centre-majority": a cell is positive when tumour covers most of its centre square, i.e.
  (for a boundary straight at the scale of a cell) when the centre lies inside the lesion, so the
  switch IS the lesion boundary;
- "pcam-any": a cell is positive when any tumour lies in its centre square of `label_px`, so the
  lit set is the lesion dilated by that square (half a label square past the lesion all round).
  The unbiased outline is the switch boundary eroded by the same square (Minkowski: for a convex
  lesion the erosion undoes the dilation exactly).
A region that the erosion would remove entirely (a lesion smaller than the label square) keeps
its deepest sub-cell points: it was detected, so it stays a (tiny) lesion.

Pure grid maths: no slide, no I/O. The planes are the cell grid (`cell_`), its sub-cells
(`sub_`, `subsamples` per cell side), and level 0 (via `CellGrid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pcam_scan.geometry import CellGrid

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
SUBSAMPLES_PER_CELL = 8
SMOOTHING_SIGMA_CELLS = 0.6
"""Gaussian smoothing of the lit SHAPE (not of the probabilities, so a lesion at p = 0.7 keeps its
size). Sampled on a grid, every boundary is off by up to half a cell, and the LONGEST diameter
picks the worst of those errors: on discs scanned with ideal 0/1 detectors the median diameter
error is about +21 um unsmoothed. Smoothed at 0.6 cells, bench/lesion_geometry.py measures a
median |error| of 14 um (pcam-any) and 17 um (centre-majority) on discs, squares and ellipses;
the price is that sharp corners round off (a square's diagonal comes out about 27 um short)."""
MAX_SUB_PIXELS = 16_000_000
"""Cap on one region's sub-cell raster: very large regions are sampled more coarsely (they are
far from every pN cut-off, and a 16 M raster keeps memory near 130 MB)."""


@dataclass(frozen=True)
class SubCellShape:
    """One lesion as a boolean raster of sub-cells, placed on the cell grid.

    `mask[i, j]` is the sub-cell whose top-left corner lies at cell-corner coordinates
    (row, col) = `origin_cell_rc` + (i, j) / `subsamples`.
    """

    origin_cell_rc: tuple[int, int]
    subsamples: int
    mask: np.ndarray = field(repr=False)


def subsamples_for(shape_cells: tuple[int, int]) -> int:
    """Sub-cells per cell side for a box of cells: `SUBSAMPLES_PER_CELL`, fewer for huge boxes."""
    n_cells = max(1, shape_cells[0] * shape_cells[1])
    fits = math.isqrt(MAX_SUB_PIXELS // n_cells) if n_cells <= MAX_SUB_PIXELS else 1
    return max(1, min(SUBSAMPLES_PER_CELL, fits))


def _linear_weights(n_cells: int, subsamples: int) -> np.ndarray:
    """(n_cells * subsamples, n_cells + 2) weights of the linear interpolation between cell
    centres, for the sub-cell centres of `n_cells` cells whose field is padded by one cell."""
    centres = (np.arange(n_cells * subsamples) + 0.5) / subsamples + 0.5  # in padded-centre index
    low = np.floor(centres).astype(np.int64)
    frac = centres - low
    weights = np.zeros((centres.size, n_cells + 2))
    rows = np.arange(centres.size)
    weights[rows, low] = 1.0 - frac
    np.add.at(weights, (rows, np.minimum(low + 1, n_cells + 1)), frac)
    return weights


def interpolated_field(values: np.ndarray, subsamples: int) -> np.ndarray:
    """Bilinear interpolation between cell centres at `subsamples` points per cell side.

    `values` (rows, cols) are cell-centre values (no NaN); outside it the field is 0, so the
    returned (rows * s, cols * s) raster covers exactly the cells given.
    """
    padded = np.pad(values, 1)
    w_rows = _linear_weights(values.shape[0], subsamples)
    w_cols = _linear_weights(values.shape[1], subsamples)
    field: np.ndarray = w_rows @ padded @ w_cols.T
    return field


def label_inset_sub(grid: CellGrid, subsamples: int) -> int:
    """How many sub-cells the lit boundary lies outside the lesion under the model's label rule."""
    geometry = grid.geometry
    if geometry.label_rule == "centre-majority":
        return 0
    return round(geometry.label_px / 2 * subsamples / geometry.cell_px)


def erode_by_square(mask: np.ndarray, half_side: int) -> np.ndarray:
    """Erosion by the square of half-side `half_side` sub-cells; when nothing would survive, the
    deepest points (largest chessboard distance to the outside) of the largest piece instead."""
    if half_side <= 0 or not mask.any():
        return mask
    depth: np.ndarray = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="chessboard")[1:-1, 1:-1]
    eroded = depth > half_side
    if eroded.any():
        return eroded
    deepest = depth == depth.max()
    labels, _ = ndimage.label(deepest, structure=EIGHT_CONNECTED)
    largest_deepest: np.ndarray = labels == labels[tuple(np.argwhere(deepest)[0])]
    return largest_deepest


def lesion_shape(
    prob: np.ndarray,
    labels: np.ndarray,
    label: int,
    box: tuple[slice, slice],
    grid: CellGrid,
    threshold: float,
) -> SubCellShape:
    """The unbiased sub-cell shape of the 8-connected region `label` of `labels`.

    `box` is the region's cell bounding box. Only this region's cells count as positive: other
    regions are set to 0 so neighbours never merge, and NaN (not predicted) counts as 0.
    """
    row0, row1 = box[0].start - 1, box[0].stop + 1
    col0, col1 = box[1].start - 1, box[1].stop + 1
    local = np.zeros((row1 - row0, col1 - col0))
    src_r0, src_c0 = max(row0, 0), max(col0, 0)
    src_r1, src_c1 = min(row1, prob.shape[0]), min(col1, prob.shape[1])
    window = prob[src_r0:src_r1, src_c0:src_c1]
    own = labels[src_r0:src_r1, src_c0:src_c1]
    kept = np.where(np.isfinite(window) & ((own == label) | (own == 0)), window, 0.0)
    local[src_r0 - row0 : src_r1 - row0, src_c0 - col0 : src_c1 - col0] = kept
    subsamples = subsamples_for(local.shape)
    field_sub = interpolated_field(local, subsamples)
    lit = field_sub >= threshold
    if lit.any():
        sigma_sub = SMOOTHING_SIGMA_CELLS * subsamples
        lit = ndimage.gaussian_filter(lit.astype(np.float32), sigma_sub, mode="constant") >= 0.5
    if not lit.any():  # a lone cell at the threshold: its field dips below between samples
        peak_r, peak_c = np.unravel_index(np.argmax(local), local.shape)
        middle = slice((subsamples - 1) // 2, subsamples // 2 + 1)
        rows = slice(peak_r * subsamples + middle.start, peak_r * subsamples + middle.stop)
        cols = slice(peak_c * subsamples + middle.start, peak_c * subsamples + middle.stop)
        lit[rows, cols] = True
    mask = erode_by_square(lit, label_inset_sub(grid, subsamples))
    clip_to_slide(mask, (row0, col0), subsamples, grid)
    return SubCellShape(origin_cell_rc=(row0, col0), subsamples=subsamples, mask=mask)


def clip_to_slide(mask: np.ndarray, origin_cell_rc: tuple[int, int], subsamples: int, grid: CellGrid) -> None:
    """Clear, in place, the sub-cells whose centre lies outside the slide (the last row and
    column of cells may reach past its edge; a lesion cannot)."""
    cell_px = grid.geometry.cell_px
    for axis, (origin, extent_px) in enumerate(
        ((origin_cell_rc[0], grid.px_height), (origin_cell_rc[1], grid.px_width))
    ):
        first = max(0, math.ceil(-origin * subsamples - 0.5))
        stop = max(0, math.ceil((extent_px / cell_px - origin) * subsamples - 0.5))
        index: list[slice] = [slice(None), slice(None)]
        index[axis] = slice(0, first)
        mask[tuple(index)] = False
        index[axis] = slice(stop, None)
        mask[tuple(index)] = False


def shape_area_mm2(shape: SubCellShape, grid: CellGrid) -> float:
    """Area of the shape in mm2 (sub-cells times their area)."""
    return int(np.count_nonzero(shape.mask)) * grid.cell_area_mm2 / shape.subsamples**2


def shape_centroid_l0(shape: SubCellShape, grid: CellGrid) -> tuple[float, float]:
    """Level-0 x, y of the centroid of the shape's sub-cells."""
    rows, cols = np.nonzero(shape.mask)
    s = shape.subsamples
    cell_r = shape.origin_cell_rc[0] + (float(rows.mean()) + 0.5) / s - 0.5
    cell_c = shape.origin_cell_rc[1] + (float(cols.mean()) + 0.5) / s - 0.5
    return grid.cell_center_l0((cell_r, cell_c))
