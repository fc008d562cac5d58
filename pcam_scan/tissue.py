"""Tissue detection: which heatmap cells are worth a prediction.

Two rules, both on HSV saturation of a low-resolution read of the slide:
- Otsu on saturation separates stained tissue from glass; the threshold is clipped to a band so a
  tile that is all tissue (or all glass) does not move it into stroma (or into noise);
- PatchCamelyon's own rule: a patch counts only if its maximum saturation is >= 0.07.
Dark pixels (value below `dark_value_max`: black pen, dust, folds burnt black) are never tissue,
so a pen mark is not scanned as if it were tumour-bearing tissue, and connected pieces smaller
than `min_component_um2` (dust, stray stain on the glass) are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import CellGrid
from pcam_scan.qc.measures import eosin_density
from pcam_scan.slide import ReadPlan, Slide, choose_read_plan


@dataclass(frozen=True)
class TissueSettings:
    """Thresholds of the tissue detector (saturation and value in [0, 1])."""

    pcam_min_max_saturation: float = 0.07
    otsu_band: tuple[float, float] = (0.07, 0.15)
    dark_value_max: float = 0.2
    min_cell_fraction: float = 0.2
    px_per_cell: int = 4
    min_component_um2: float = 10_000.0

    def __post_init__(self) -> None:
        low, high = self.otsu_band
        if not 0 <= low <= high <= 1:
            raise ConfigError(f"otsu_band {self.otsu_band} must be 0 <= low <= high <= 1")
        if not 0 <= self.dark_value_max < 1 or not 0 <= self.pcam_min_max_saturation <= 1:
            raise ConfigError("dark_value_max and pcam_min_max_saturation must lie in [0, 1]")
        if not 0 <= self.min_cell_fraction <= 1:
            raise ConfigError("min_cell_fraction must lie in [0, 1]")
        if self.min_component_um2 < 0:
            raise ConfigError("min_component_um2 must not be negative")
        if self.px_per_cell < 2:
            raise ConfigError("px_per_cell must be at least 2")


@dataclass(frozen=True)
class TissueGrid:
    """Boolean cell grid of tissue, the tissue area, the saturation threshold used, and the
    median eosin density of the tissue pixels (QC's fold reference, from the same thumbnail)."""

    cells: np.ndarray
    area_mm2: float
    saturation_threshold: float
    eosin_reference: float = 0.0

    @property
    def n_cells(self) -> int:
        return int(self.cells.sum())


def hsv_saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value in [0, 1] of a uint8 RGB image."""
    rgb_f = rgb[..., :3].astype(np.float32)
    cmax = rgb_f.max(axis=-1)
    cmin = rgb_f.min(axis=-1)
    saturation = np.where(cmax > 0, (cmax - cmin) / np.maximum(cmax, 1e-6), 0.0)
    return saturation.astype(np.float32), (cmax / 255.0).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.0
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = total - weight_low
    sum_low = np.cumsum(hist * centres)
    mean_low = sum_low / np.maximum(weight_low, 1e-12)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def drop_small_components(mask: np.ndarray, min_px: float) -> np.ndarray:
    """The mask without 8-connected pieces smaller than `min_px` pixels (dust, stray stain)."""
    if min_px <= 1 or not mask.any():
        return mask
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    kept: np.ndarray = keep[labels]
    return kept


def tissue_pixels(
    rgb: np.ndarray, settings: TissueSettings, px_mpp_um_px: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-pixel tissue mask, the saturation image, and the clipped Otsu threshold."""
    saturation, value = hsv_saturation_value(rgb)
    # a 3x3 mean takes the sensor noise of glass (single pixels at 0.05-0.08) out of the mask
    saturation = ndimage.uniform_filter(saturation, size=3, mode="nearest")
    low, high = settings.otsu_band
    threshold = min(max(otsu_threshold(saturation), low), high)
    not_dark = value > settings.dark_value_max
    mask = (saturation > threshold) & not_dark
    mask = drop_small_components(mask, settings.min_component_um2 / px_mpp_um_px**2)
    return mask, np.where(not_dark, saturation, 0.0).astype(np.float32), threshold


def _cell_edges(n_cells: int, cell_size_in_map_px: float, map_len: int) -> np.ndarray:
    edges = np.round(np.arange(n_cells + 1) * cell_size_in_map_px).astype(np.int64)
    return np.clip(edges, 0, map_len)


def _reduce_cells(image: np.ndarray, row_edges: np.ndarray, col_edges: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Reduce a map image over the rectangles between edges (rows, then columns)."""
    padded = np.pad(image, ((0, 1), (0, 1)))  # a cell past the map edge reduces over zeros
    rows = ufunc.reduceat(padded, np.minimum(row_edges[:-1], padded.shape[0] - 1), axis=0)
    return ufunc.reduceat(rows, np.minimum(col_edges[:-1], padded.shape[1] - 1), axis=1)


def tissue_grid_from_map(rgb: np.ndarray, map_mpp_um_px: float, grid: CellGrid, settings: TissueSettings) -> TissueGrid:
    """Tissue cells of `grid` from an RGB map of the whole slide at `map_mpp_um_px`.

    Cell edges are mapped exactly from the grid's plane into the map's plane, so the map can
    come from any pyramid level.
    """
    mask, saturation, threshold = tissue_pixels(rgb, settings, map_mpp_um_px)
    cell_in_map_px = grid.cell_um / map_mpp_um_px
    if cell_in_map_px < 1:
        raise ConfigError("the tissue map is coarser than the heatmap cells")
    row_edges = _cell_edges(grid.rows, cell_in_map_px, mask.shape[0])
    col_edges = _cell_edges(grid.cols, cell_in_map_px, mask.shape[1])
    counts = _reduce_cells(mask.astype(np.int64), row_edges, col_edges, np.add)
    areas = np.outer(np.maximum(np.diff(row_edges), 1), np.maximum(np.diff(col_edges), 1))
    fraction = counts / areas
    max_saturation = _reduce_cells(saturation, row_edges, col_edges, np.maximum)
    reach = 2 * math.ceil(grid.geometry.halo_px / grid.geometry.cell_px) + 1
    patch_max_saturation = ndimage.maximum_filter(max_saturation, size=reach, mode="constant")
    cells = (fraction >= settings.min_cell_fraction) & (patch_max_saturation >= settings.pcam_min_max_saturation)
    cells &= counts > 0
    area_mm2 = float(mask.sum()) * (map_mpp_um_px / 1000.0) ** 2
    eosin_reference = float(np.median(eosin_density(rgb[mask]))) if mask.any() else 0.0
    return TissueGrid(cells=cells, area_mm2=area_mm2, saturation_threshold=threshold, eosin_reference=eosin_reference)


def read_tissue_map(slide: Slide, grid: CellGrid, settings: TissueSettings) -> tuple[np.ndarray, ReadPlan]:
    """An RGB read of the whole slide at about `px_per_cell` pixels per heatmap cell."""
    map_mpp = grid.cell_um / settings.px_per_cell
    plan = choose_read_plan(slide.info, map_mpp)
    l0_per_map_px = plan.px_mpp_um_px / slide.info.mpp_um_px
    size = (
        max(1, math.ceil(slide.info.l0_width / l0_per_map_px)),
        max(1, math.ceil(slide.info.l0_height / l0_per_map_px)),
    )
    return slide.read_px_region(plan, (0, 0), size), plan


def detect_tissue(slide: Slide, grid: CellGrid, settings: TissueSettings | None = None) -> TissueGrid:
    """Boolean tissue grid over the slide's heatmap cells and the tissue area in mm2."""
    settings = settings or TissueSettings()
    rgb, plan = read_tissue_map(slide, grid, settings)
    return tissue_grid_from_map(rgb, plan.px_mpp_um_px, grid, settings)
