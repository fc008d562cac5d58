"""The heatmap pyramid: NaN-aware 2x downsampling of a probability grid. Pure numpy, no I/O.

Each level halves the one below (odd sides round up; the missing half-window counts as NaN), so
the scale between levels is exactly 2 and level k covers 2**k x 2**k cells of level 0.

Pooling:
- `max` (the default) keeps the highest probability of the window, so a small metastasis (a few
  cells) stays visible when the whole slide is viewed at low zoom. It is what a reader looking for
  lesions wants, and what the pyramid is for.
- `mean` gives the average probability of the predicted cells of the window: smoother, but a
  two-cell lesion fades away after a few levels.
Both ignore NaN (cells without tissue); a window with no predicted cell stays NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

Pooling = Literal["max", "mean"]
POOLINGS: tuple[Pooling, ...] = ("max", "mean")
DEFAULT_TOP_CELLS = 256

FloatGrid = npt.NDArray[np.float32]


def downsample_2x(level: npt.ArrayLike, pooling: Pooling = "max") -> FloatGrid:
    """Pool each 2x2 window of a 2-D float grid into one cell, ignoring NaN."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    grid = np.asarray(level, dtype=np.float32)
    if grid.ndim != 2:
        raise ValueError(f"expected a 2-D grid, got shape {grid.shape}")
    rows, cols = grid.shape
    out_rows, out_cols = -(-rows // 2), -(-cols // 2)
    padded = np.full((out_rows * 2, out_cols * 2), np.nan, dtype=np.float32)
    padded[:rows, :cols] = grid
    by_window = padded.reshape(out_rows, 2, out_cols, 2).transpose(0, 2, 1, 3)
    windows = by_window.reshape(out_rows, out_cols, 4)
    valid = ~np.isnan(windows)
    n_valid = valid.sum(axis=-1)
    if pooling == "max":
        pooled = np.where(valid, windows, -np.inf).max(axis=-1)
    else:
        pooled = np.where(valid, windows, 0.0).sum(axis=-1) / np.maximum(n_valid, 1)
    return np.where(n_valid > 0, pooled, np.nan).astype(np.float32)


def pyramid_shapes(shape: tuple[int, int], top_cells: int = DEFAULT_TOP_CELLS) -> list[tuple[int, int]]:
    """Shapes of all levels: halve until the largest side is <= `top_cells` or a side is 1."""
    if top_cells < 1:
        raise ValueError("top_cells must be at least 1")
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > top_cells and min(shapes[-1]) > 1:
        rows, cols = shapes[-1]
        shapes.append((-(-rows // 2), -(-cols // 2)))
    return shapes


def build_pyramid(
    level0: npt.ArrayLike, pooling: Pooling = "max", top_cells: int = DEFAULT_TOP_CELLS
) -> list[FloatGrid]:
    """Level 0 (as float32) and every coarser level, finest first."""
    levels = [np.asarray(level0, dtype=np.float32)]
    for _ in pyramid_shapes(levels[0].shape, top_cells)[1:]:
        levels.append(downsample_2x(levels[-1], pooling))
    return levels


FlagGrid = npt.NDArray[np.uint8]


def build_flag_pyramid(level0: npt.ArrayLike, top_cells: int = DEFAULT_TOP_CELLS) -> list[FlagGrid]:
    """Bit-flag levels (QC): each 2x2 window ORed, so an artefact stays visible at low zoom; the
    same shapes as `build_pyramid`'s."""
    levels = [np.asarray(level0, dtype=np.uint8)]
    for rows, cols in pyramid_shapes(levels[0].shape, top_cells)[1:]:
        below = levels[-1]
        padded = np.zeros((rows * 2, cols * 2), dtype=np.uint8)
        padded[: below.shape[0], : below.shape[1]] = below
        windows = padded.reshape(rows, 2, cols, 2)
        levels.append(np.bitwise_or.reduce(np.bitwise_or.reduce(windows, axis=3), axis=1))
    return levels
