"""Polygons to a boolean mask at any pyramid level: tumour filled, exclusions removed.

Convention (exact, no drawing library's rounding): with `d = l0_downsample`, mask pixel (r, c)
covers level-0 [c*d, (c+1)*d) x [r*d, (r+1)*d), and it is inside a polygon when its centre
((c + 0.5)*d, (r + 0.5)*d) is, by the even-odd rule. A centre exactly on a left or top edge is
inside, on a right or bottom edge outside, so polygons that share an edge never both claim a pixel
and an axis-aligned square [x0, x1) x [y0, y1) covers exactly the pixels whose centres lie in it.

Scanline fill in numpy: every edge is cut with the pixel-centre rows it spans, the crossings are
paired per polygon and row, and the spans are summed into a row band (union of tumour polygons,
then exclusions cleared: exclusions win). The work is proportional to the edges' row spans, and
apart from the mask itself memory stays within one band of about `BAND_PX` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pcam_scan.annotations.model import Polygon, SlideAnnotations
from pcam_scan.errors import ConfigError

BAND_PX = 1 << 21


def rasterize_annotations(
    annotations: SlideAnnotations,
    l0_downsample: float,
    shape_hw: tuple[int, int],
    l0_origin_xy: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Boolean (H, W) mask of tumour minus exclusions at `l0_downsample` level-0 px per mask px.

    `l0_origin_xy` is the level-0 point at the mask's top-left corner (a region of a slide);
    polygons outside the mask are clipped.
    """
    if not (math.isfinite(l0_downsample) and l0_downsample > 0):
        raise ConfigError(f"l0_downsample must be a positive number, got {l0_downsample}")
    height, width = (int(v) for v in shape_hw)
    if height < 0 or width < 0 or (height, width) != tuple(shape_hw):
        raise ConfigError(f"mask shape must be two non-negative integers, got {shape_hw}")
    mask = np.zeros((height, width), dtype=bool)
    if height == 0 or width == 0 or not annotations.tumour:
        return mask
    origin = np.asarray(l0_origin_xy, dtype=np.float64)
    tumour = _Edges.of(annotations.tumour, l0_downsample, origin)
    exclusion = _Edges.of(annotations.exclusions, l0_downsample, origin)
    rows_per_band = max(1, BAND_PX // (width + 1))
    row_lo = max(0, tumour.row_min)
    row_hi = min(height, tumour.row_max)
    for band_lo in range(row_lo, row_hi, rows_per_band):
        band_hi = min(band_lo + rows_per_band, row_hi)
        band = tumour.coverage(band_lo, band_hi, width)
        if band is None:
            continue
        excluded = exclusion.coverage(band_lo, band_hi, width)
        if excluded is not None:
            band &= ~excluded
        mask[band_lo:band_hi] = band
    return mask


class _Edges:
    """The edges of a set of rings in mask-centre units: pixel (r, c) has its centre at u=c, v=r."""

    def __init__(self, ring_id: np.ndarray, u0: np.ndarray, v0: np.ndarray, u1: np.ndarray, v1: np.ndarray) -> None:
        keep = v0 != v1  # horizontal edges cross no scanline
        self.ring_id = ring_id[keep]
        self.u0, self.v0 = u0[keep], v0[keep]
        self.slope = (u1[keep] - self.u0) / (v1[keep] - self.v0)
        # Edge crosses row r when min(v) <= r < max(v): the half-open rule keeps parity per row.
        self.first_row = np.ceil(np.minimum(self.v0, v1[keep])).astype(np.int64)
        self.stop_row = np.ceil(np.maximum(self.v0, v1[keep])).astype(np.int64)
        self.row_min = int(self.first_row.min()) if len(self.first_row) else 0
        self.row_max = int(self.stop_row.max()) if len(self.stop_row) else 0

    @classmethod
    def of(cls, polygons: Sequence[Polygon], l0_downsample: float, origin: np.ndarray) -> _Edges:
        parts = [(p.l0_xy - origin) / l0_downsample - 0.5 for p in polygons]
        if not parts:
            empty = np.zeros(0)
            return cls(empty.astype(np.int64), empty, empty, empty, empty)
        ring_id = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        start = np.concatenate(parts)
        end = np.concatenate([np.roll(p, -1, axis=0) for p in parts])
        return cls(ring_id, start[:, 0], start[:, 1], end[:, 0], end[:, 1])

    def coverage(self, band_lo: int, band_hi: int, width: int) -> np.ndarray | None:
        """Boolean (band_hi - band_lo, width): pixels inside any ring, or None when none are."""
        first = np.maximum(self.first_row, band_lo)
        count = np.clip(np.minimum(self.stop_row, band_hi) - first, 0, None)
        total = int(count.sum())
        if total == 0:
            return None
        edge = np.repeat(np.arange(len(count)), count)
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        row = first[edge] + offset
        u = self.u0[edge] + (row - self.v0[edge]) * self.slope[edge]
        order = np.lexsort((u, row, self.ring_id[edge]))
        row, u = row[order], u[order]
        # Each ring crosses each row an even number of times: consecutive pairs are inside spans.
        span_row = row[0::2] - band_lo
        col_lo = np.clip(np.ceil(u[0::2]), 0, width).astype(np.int64)
        col_hi = np.clip(np.ceil(u[1::2]), 0, width).astype(np.int64)
        n_rows = band_hi - band_lo
        diff = np.bincount(span_row * (width + 1) + col_lo, minlength=n_rows * (width + 1))
        diff -= np.bincount(span_row * (width + 1) + col_hi, minlength=n_rows * (width + 1))
        depth = np.cumsum(diff.reshape(n_rows, width + 1), axis=1)
        return depth[:, :width] > 0
