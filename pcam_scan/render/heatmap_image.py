"""A heatmap as pixels: sample the probability pyramid on any level-0 pixel raster, colour it.

One sampling rule serves the viewer's deep-zoom tiles and the static renders, so a tile and a
report show the same cells in the same place. Output pixel (i, j) of a raster with top-left
`l0_origin_xy` and `l0_per_out_px` level-0 px per output px has its centre at level-0
`origin + (j + 0.5, i + 0.5) * l0_per_out_px`, and shows the cell that holds that centre, taken
from the pyramid level whose cells are the smallest that are still at least one output pixel wide.
Every cell of that level is then hit by at least one pixel centre, and since coarser levels keep
the maximum of the cells below them (max pooling, see docs/store.md) a small lesion stays visible
at any zoom. The cell -> level-0 mapping is the store's CellGrid, never guessed from sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid
from pcam_scan.render.style_defaults import DEFAULT_COLORMAP, DEFAULT_THRESHOLD
from pcam_scan.store import HeatmapReader, SlideState
from pcam_scan.store.pyramid import build_flag_pyramid, build_pyramid
from pcam_scan.store.queries import read_heatmap
from pcam_scan.store.validation import DamagedSlideError
from pcam_scan.validation import check_probability

FloatImage = npt.NDArray[np.float32]
ArrayT = TypeVar("ArrayT", np.float32, np.uint8)
RgbaImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class HeatmapStyle:
    """How probabilities become colours: a matplotlib colour map over [0, 1], and a threshold
    below which (and where NaN: no tissue, not predicted) the heatmap is fully transparent."""

    threshold: float = DEFAULT_THRESHOLD
    colormap: str = DEFAULT_COLORMAP

    def __post_init__(self) -> None:
        check_probability("heatmap threshold", self.threshold)
        import matplotlib

        if self.colormap not in matplotlib.colormaps:
            raise ConfigError(f"unknown colour map {self.colormap!r}; use a matplotlib name, e.g. viridis")

    @cached_property
    def lut(self) -> RgbaImage:
        """The colour map as 256 RGBA uint8 entries (index = round(p * 255))."""
        import matplotlib

        cmap = matplotlib.colormaps[self.colormap].resampled(256)
        return np.asarray(cmap(np.arange(256), bytes=True), dtype=np.uint8)


def colourise(prob: FloatImage, style: HeatmapStyle) -> RgbaImage:
    """RGBA image of a probability image: opaque colour at or above the threshold, else clear."""
    finite = np.isfinite(prob)
    shown = np.zeros(prob.shape, dtype=bool)
    np.greater_equal(prob, style.threshold, where=finite, out=shown)
    values = np.where(shown, prob, 0.0)
    rgba: RgbaImage = style.lut[np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.intp)]
    rgba[~shown] = 0
    return rgba


@dataclass(frozen=True)
class HeatmapPyramid:
    """The probability levels of one slide (finest first) and its cell grid."""

    grid: CellGrid
    levels: tuple[FloatImage, ...]
    qc_levels: tuple[npt.NDArray[np.uint8], ...] | None = None
    """QC bit flags per level (OR-pooled), None when the slide has no QC."""

    def __post_init__(self) -> None:
        if not self.levels or self.levels[0].shape != self.grid.shape:
            shape = self.levels[0].shape if self.levels else None
            raise StoreError(f"heatmap level 0 of shape {shape} does not match the grid {self.grid.shape}")

    @classmethod
    def from_store(cls, reader: HeatmapReader, slide_id: str) -> HeatmapPyramid:
        """The stored pyramid of a complete slide; for a slide still being scanned (level 0
        only), the same max-pooled levels built in memory, so a scan in progress can be viewed."""
        grid = reader.read_grid(slide_id)
        status = reader.slide_status(slide_id)
        n_stored = len(reader.prob_level_shapes(slide_id))
        if status is not None and status.state is SlideState.DAMAGED:
            raise DamagedSlideError(slide_id, status.message or "unreadable")
        if status is not None and status.state is SlideState.COMPLETE:
            heatmap = read_heatmap(reader, slide_id)  # QC's excluded cells already NaN
            if heatmap.qc_flags is not None:
                levels = build_pyramid(heatmap.prob)
                return cls(grid, tuple(levels), tuple(build_flag_pyramid(heatmap.qc_flags)))
            levels = [heatmap.prob, *(reader.read_prob(slide_id, level) for level in range(1, n_stored))]
        else:
            levels = build_pyramid(reader.read_prob(slide_id, 0))
        return cls(grid, tuple(levels))

    @property
    def l0_per_cell(self) -> float:
        """Level-0 pixels per level-0 heatmap cell (a cell's side)."""
        return self.grid.l0_per_px * self.grid.geometry.cell_px

    def level_for(self, l0_per_out_px: float) -> int:
        """The finest level whose cells are at least one output pixel wide (capped at the top)."""
        if not (math.isfinite(l0_per_out_px) and l0_per_out_px > 0):
            raise ConfigError(f"output pixel size {l0_per_out_px} level-0 px must be positive")
        ratio = l0_per_out_px / self.l0_per_cell
        level = 0 if ratio <= 1.0 else math.ceil(math.log2(ratio) - 1e-9)
        return min(level, len(self.levels) - 1)

    def sample(self, l0_origin_xy: tuple[float, float], l0_per_out_px: float, size_wh: tuple[int, int]) -> FloatImage:
        """Probabilities on a raster (see the module doc); NaN outside the grid and off tissue."""
        out = np.full((size_wh[1], size_wh[0]), np.nan, dtype=np.float32)
        return self._sample_into(out, self.levels, l0_origin_xy, l0_per_out_px)

    def sample_qc(
        self, l0_origin_xy: tuple[float, float], l0_per_out_px: float, size_wh: tuple[int, int]
    ) -> npt.NDArray[np.uint8]:
        """QC bit flags on the same raster as `sample` (0 outside the grid, or without QC)."""
        out = np.zeros((size_wh[1], size_wh[0]), dtype=np.uint8)
        if self.qc_levels is None:
            return out
        return self._sample_into(out, self.qc_levels, l0_origin_xy, l0_per_out_px)

    def _sample_into(
        self,
        out: npt.NDArray[ArrayT],
        levels: tuple[npt.NDArray[ArrayT], ...],
        l0_origin_xy: tuple[float, float],
        l0_per_out_px: float,
    ) -> npt.NDArray[ArrayT]:
        height, width = out.shape
        level = self.level_for(l0_per_out_px)
        cells = levels[level]
        l0_per_level_cell = self.l0_per_cell * 2**level
        cols = _cell_indices(l0_origin_xy[0], l0_per_out_px, width, l0_per_level_cell)
        rows = _cell_indices(l0_origin_xy[1], l0_per_out_px, height, l0_per_level_cell)
        col_ok = (cols >= 0) & (cols < cells.shape[1])
        row_ok = (rows >= 0) & (rows < cells.shape[0])
        out[np.ix_(row_ok, col_ok)] = cells[np.ix_(rows[row_ok], cols[col_ok])]
        return out


def _cell_indices(l0_start: float, l0_step: float, count: int, l0_per_cell: float) -> npt.NDArray[np.int64]:
    centres = l0_start + (np.arange(count, dtype=np.float64) + 0.5) * l0_step
    return np.floor(centres / l0_per_cell).astype(np.int64)
