"""Lesions from a heatmap: tumour regions with their size, and point detections with confidence.

Two readings of one probability map over a `CellGrid`:
- regions: 8-connected cells at or above a threshold, measured in slide units (area in mm2, the
  longest diameter in um, the centroid in level-0 pixels), for diagnosis and export;
- point detections: peaks of the map smoothed with a NaN-aware Gaussian, kept by non-maximum
  suppression, each with a confidence and level-0 X, Y: the Camelyon16 lesion-detection output.

NaN cells were not predicted (no tissue): they are never part of a region or a peak, and the
smoothing neither spreads them nor lets them pull neighbours towards zero.

Region geometry is sub-cell (`pcam_scan.lesion_geometry`): the outline is where the probability
field interpolated between cell centres crosses the threshold, corrected for the model's label
rule (under PCam's rule the output lights up half a label square past the lesion). Area, longest
diameter and centroid are measured on that shape, so exports, the viewer, the diagnosis and the pN
category all see the same lesion. The longest diameter is the maximum Feret diameter over the
corners of the shape's sub-cells (1/8 cell, about 4 um, at PCam geometry).
A connected set of cells whose shape falls apart under the correction gives one region per piece.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from pcam_scan.defaults import (
    DETECTION_MIN_DISTANCE_CELLS,
    DETECTION_SIGMA_CELLS,
    DETECTION_THRESHOLD,
    REGION_THRESHOLD,
)
from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid
from pcam_scan.lesion_geometry import (
    SubCellShape,
    lesion_shape,
    shape_area_mm2,
    shape_centroid_l0,
)
from pcam_scan.validation import check_probability

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class RegionSettings:
    """Cells with probability >= `threshold` form regions (8-connectivity)."""

    threshold: float = REGION_THRESHOLD

    def __post_init__(self) -> None:
        check_probability("region threshold", self.threshold)


@dataclass(frozen=True)
class DetectionSettings:
    """Point detections: Gaussian of `sigma_cells` (0 = none), peaks >= `threshold` on the
    smoothed map, no two peaks closer than `min_distance_cells` (Euclidean, in cells)."""

    sigma_cells: float = DETECTION_SIGMA_CELLS
    threshold: float = DETECTION_THRESHOLD
    min_distance_cells: float = DETECTION_MIN_DISTANCE_CELLS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma_cells) and 0.0 <= self.sigma_cells <= 50.0):
            raise ConfigError(f"smoothing sigma {self.sigma_cells} cells must lie in [0, 50]")
        check_probability("detection threshold", self.threshold)
        if not (math.isfinite(self.min_distance_cells) and 1.0 <= self.min_distance_cells <= 500.0):
            raise ConfigError(f"minimum peak distance {self.min_distance_cells} cells must lie in [1, 500]")


@dataclass(frozen=True)
class Region:
    """One connected tumour region of the heatmap, measured in slide units.

    `label` is the label of its 8-connected cells (`label_regions`), `n_cells` their number and
    `cell_bbox_rc` their box; area, diameter and centroid are those of its sub-cell `shape`."""

    label: int
    n_cells: int
    area_mm2: float
    diameter_um: float
    centroid_l0_xy: tuple[float, float]
    max_prob: float
    mean_prob: float
    cell_bbox_rc: tuple[int, int, int, int]
    """(row0, col0, row1, col1), end-exclusive cell rows and columns."""
    shape: SubCellShape | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Detection:
    """One point detection: its confidence (smoothed probability at the peak) and position."""

    confidence: float
    cell_rc: tuple[int, int]
    l0_xy: tuple[float, float]


def check_heatmap(prob: np.ndarray, grid: CellGrid) -> np.ndarray:
    """The heatmap as float64, refused when it is not a 2-D array of the grid's shape."""
    arr = np.asarray(prob)
    if arr.ndim != 2 or arr.shape != grid.shape:
        raise StoreError(f"heatmap shape {arr.shape} does not match the cell grid {grid.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise StoreError(f"heatmap dtype {arr.dtype} is not floating point")
    return arr.astype(np.float64, copy=False)


def feret_diameter_cells(rows: np.ndarray, cols: np.ndarray) -> float:
    """Maximum Feret diameter, in units of the squares' side, over the corners of the given
    unit squares (cells or sub-cells)."""
    if rows.size == 0:
        return 0.0
    corners = np.concatenate([np.stack([rows + dr, cols + dc], axis=1) for dr in (0, 1) for dc in (0, 1)]).astype(
        np.float64
    )
    corners = np.unique(corners, axis=0)
    hull = ConvexHull(corners)  # cells are unit squares, so the corners are never collinear
    return float(pdist(corners[hull.vertices]).max())


def label_regions(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """8-connected labels of cells >= threshold (NaN never qualifies) and the label count."""
    above = np.zeros(prob.shape, dtype=bool)
    np.greater_equal(prob, threshold, where=np.isfinite(prob), out=above)
    labels, count = ndimage.label(above, structure=EIGHT_CONNECTED)
    return labels, int(count)


def find_regions(prob: np.ndarray, grid: CellGrid, settings: RegionSettings) -> list[Region]:
    """Connected regions at or above the threshold with sub-cell geometry, largest area first."""
    values = check_heatmap(prob, grid)
    labels, _ = label_regions(values, settings.threshold)
    regions: list[Region] = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        cell_values = values[box][labels[box] == label]
        shape = lesion_shape(values, labels, label, box, grid, settings.threshold)
        for piece in split_shape(shape) if shape.mask.any() else []:  # all past the slide's edge
            regions.append(
                Region(
                    label=label,
                    n_cells=int(cell_values.size),
                    area_mm2=shape_area_mm2(piece, grid),
                    diameter_um=feret_diameter_cells(*np.nonzero(piece.mask)) / piece.subsamples * grid.cell_um,
                    centroid_l0_xy=shape_centroid_l0(piece, grid),
                    max_prob=float(cell_values.max()),
                    mean_prob=float(cell_values.mean()),
                    cell_bbox_rc=(box[0].start, box[1].start, box[0].stop, box[1].stop),
                    shape=piece,
                )
            )
    regions.sort(key=lambda r: (-r.area_mm2, r.label, r.centroid_l0_xy))
    return regions


def split_shape(shape: SubCellShape) -> list[SubCellShape]:
    """The 8-connected pieces of a shape, each as a shape of its own (same origin and scale)."""
    pieces, count = ndimage.label(shape.mask, structure=EIGHT_CONNECTED)
    if count <= 1:
        return [shape]
    return [SubCellShape(shape.origin_cell_rc, shape.subsamples, pieces == index) for index in range(1, count + 1)]


def smooth_nan_aware(prob: np.ndarray, sigma_cells: float) -> np.ndarray:
    """Gaussian smoothing that ignores NaN cells: a weighted mean over predicted neighbours.

    Cells that were NaN stay NaN; edges and holes renormalise instead of pulling values to zero.
    """
    finite = np.isfinite(prob)
    if sigma_cells == 0:
        return np.where(finite, prob, np.nan)
    filled = np.where(finite, prob, 0.0)
    numerator = ndimage.gaussian_filter(filled, sigma_cells, mode="constant", cval=0.0)
    weight = ndimage.gaussian_filter(finite.astype(np.float64), sigma_cells, mode="constant", cval=0.0)
    out = np.full(prob.shape, np.nan)
    np.divide(numerator, weight, out=out, where=finite & (weight > 1e-12))
    return out


def _disk(radius: float) -> np.ndarray:
    r = math.floor(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk: np.ndarray = (yy * yy + xx * xx) <= radius * radius
    return disk


def detect_points(prob: np.ndarray, grid: CellGrid, settings: DetectionSettings) -> list[Detection]:
    """Peaks of the smoothed map, highest confidence first.

    A cell is a candidate when it is finite, >= the threshold and equal to the maximum of the
    smoothed map within a disk of `min_distance_cells`. Candidates are then taken in order of
    confidence (ties: row-major order) and one closer than `min_distance_cells` to an already
    kept peak is dropped, so plateaus give one detection.
    """
    smoothed = smooth_nan_aware(check_heatmap(prob, grid), settings.sigma_cells)
    finite = np.isfinite(smoothed)
    floor_filled = np.where(finite, smoothed, -np.inf)
    local_max = ndimage.maximum_filter(
        floor_filled, footprint=_disk(settings.min_distance_cells), mode="constant", cval=-np.inf
    )
    candidate = finite & (smoothed >= settings.threshold) & (floor_filled == local_max)
    rows, cols = np.nonzero(candidate)
    confidences = smoothed[rows, cols]
    order = np.lexsort((cols, rows, -confidences))
    kept_rc: list[tuple[int, int]] = []
    detections: list[Detection] = []
    min_d2 = settings.min_distance_cells**2
    for index in order:
        row, col = int(rows[index]), int(cols[index])
        if any((row - r) ** 2 + (col - c) ** 2 < min_d2 for r, c in kept_rc):
            continue
        kept_rc.append((row, col))
        detections.append(
            Detection(
                confidence=float(confidences[index]),
                cell_rc=(row, col),
                l0_xy=grid.cell_center_l0((row, col)),
            )
        )
    return detections
