"""A stored slide is checked before it is believed.

A heatmap store is a folder of files anyone can edit, truncate or corrupt. Without checks a
`prob` holding 7.5 was diagnosed "positive, 7.5", a slide marked complete whose blocks were never
written was diagnosed "negative", and one broken `zarr.json` took every viewer route down. So:

- every read of a slide's metadata or arrays goes through `reading_slide`, which turns what Zarr,
  the codecs or the JSON decoder raise on damaged files into one `DamagedSlideError` line;
- `check_grid`, `check_prob`, `check_tissue` and `check_complete` check what was read: finite,
  plausible MPP and sizes, the shapes and dtypes the store writes, probabilities in [0, 1] or
  NaN, and a `complete` status that the done marks and the predictions agree with.

A damaged slide is reported (status `damaged` with the reason), never diagnosed, evaluated or
drawn, and the other slides of the store go on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pcam_scan.errors import PcamScanError, StoreError
from pcam_scan.geometry import CellGrid

# What reading damaged Zarr files raises: zarr's errors and JSONDecodeError are ValueErrors, a
# corrupt zstd chunk a RuntimeError, a truncated file an OSError, JSON nested 100k deep a
# RecursionError, a tampered attribute a TypeError/KeyError/IndexError.
READ_FAILURES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OSError,
    RuntimeError,
    RecursionError,
    MemoryError,
)

MPP_RANGE_UM_PX = (0.01, 100.0)
MAX_L0_SIDE_PX = 10_000_000
PROB_DTYPES = (np.dtype("float32"), np.dtype("float64"))


MAX_METADATA_BYTES = 16 * 1024 * 1024  # a slide's zarr.json is a few kB


class DamagedSlideError(StoreError):
    """A slide's files in the store are damaged or inconsistent; the message says how."""

    def __init__(self, slide_id: str, problem: str) -> None:
        super().__init__(f"slide {slide_id!r} is damaged: {problem}")
        self.slide_id = slide_id
        self.problem = problem


@contextmanager
def reading_slide(slide_id: str, what: str) -> Iterator[None]:
    """Turn a failure to read the slide's `what` into a DamagedSlideError (ours pass through)."""
    try:
        yield
    except PcamScanError:
        raise
    except READ_FAILURES as err:
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DamagedSlideError(slide_id, f"cannot read its {what} ({type(err).__name__}: {detail})") from None


def check_grid(slide_id: str, grid: CellGrid) -> CellGrid:
    """Finite, plausible MPP and level-0 size (a NaN MPP would make every size NaN)."""
    low, high = MPP_RANGE_UM_PX
    for name, value in (("slide MPP", grid.slide_mpp_um_px), ("read-plane MPP", grid.px_mpp_um_px)):
        if not (math.isfinite(value) and low <= value <= high):
            raise DamagedSlideError(slide_id, f"its {name} {value!r} um/px is not in [{low}, {high}]")
    if max(grid.l0_width, grid.l0_height) > MAX_L0_SIDE_PX:
        raise DamagedSlideError(
            slide_id, f"its size {grid.l0_width} x {grid.l0_height} px exceeds {MAX_L0_SIDE_PX} px a side"
        )
    return grid


def check_prob(slide_id: str, level: int, prob: npt.NDArray[Any], shape: tuple[int, int] | None) -> None:
    """A probability level: float, the grid's shape (level 0), every value in [0, 1] or NaN."""
    if prob.dtype not in PROB_DTYPES:
        raise DamagedSlideError(slide_id, f"prob level {level} holds {prob.dtype}, not float32")
    if prob.ndim != 2 or (shape is not None and prob.shape != shape):
        raise DamagedSlideError(slide_id, f"prob level {level} has shape {prob.shape}, the cell grid is {shape}")
    finite = prob[~np.isnan(prob)]
    if finite.size and not (np.all(np.isfinite(finite)) and finite.min() >= 0 and finite.max() <= 1):
        bad = finite[~((finite >= 0) & (finite <= 1))]
        raise DamagedSlideError(
            slide_id, f"prob level {level} holds {bad.size} values outside [0, 1] (e.g. {float(bad.flat[0]):g})"
        )


MAX_GRID_CELLS = 64 * 1024**2
"""Cells of any one stored grid: a 10-million-pixel side at 128 px a cell is 78,125 cells, and a
grid of 8192 x 8192 (256 MiB of float32) is already far beyond a real slide's."""


def check_shape_before_reading(
    slide_id: str, what: str, stored: tuple[int, ...], expected: tuple[int, int] | None
) -> None:
    """Refuse an array whose metadata claims a shape other than the grid's (or, for a pyramid
    level, one too big for any grid) before it is read: a zarr.json edited to 16000 x 16000 cost
    1.4 GB of NaN before the shape check ran on what was read."""
    if expected is not None and tuple(stored) != tuple(expected):
        raise DamagedSlideError(slide_id, f"{what} has shape {tuple(stored)}, the cell grid is {expected}")
    if math.prod(stored) > MAX_GRID_CELLS:
        raise DamagedSlideError(slide_id, f"{what} has shape {tuple(stored)}, over {MAX_GRID_CELLS} cells")


def check_tissue(slide_id: str, tissue: npt.NDArray[Any], shape: tuple[int, int]) -> None:
    if tissue.dtype != np.bool_ or tissue.shape != shape:
        raise DamagedSlideError(slide_id, f"tissue is {tissue.dtype} {tissue.shape}, expected bool {shape}")


def check_complete(
    slide_id: str,
    prob: npt.NDArray[Any],
    tissue: npt.NDArray[np.bool_],
    missing_blocks: int,
) -> None:
    """A `complete` slide has every planned block done and a prediction for every tissue cell:
    a done block whose chunk was deleted (Zarr then reads NaN) or whose lesion cells were set to
    NaN must not be diagnosed from what is left (it read "negative" although positive)."""
    if missing_blocks:
        raise DamagedSlideError(
            slide_id, f"it is marked complete but {missing_blocks} planned blocks were never written"
        )
    unpredicted = int(np.count_nonzero(~np.isfinite(prob[tissue])))
    if unpredicted:  # every tissue cell lies in a planned block, and a done block predicts all of them
        raise DamagedSlideError(
            slide_id,
            f"it is marked complete but {unpredicted} of its {int(np.count_nonzero(tissue))} tissue cells have no "
            "prediction (a chunk missing, replaced or emptied)",
        )


def check_metadata_size(slide_id: str, metadata_path: Path | None) -> None:
    """Refuse a local `zarr.json` too big to be ours before Zarr reads it whole into memory."""
    if metadata_path is None:
        return
    try:
        size = metadata_path.stat().st_size
    except OSError:
        return  # missing: Zarr says so
    if size > MAX_METADATA_BYTES:
        raise DamagedSlideError(slide_id, f"its zarr.json is {size} bytes, over the limit of {MAX_METADATA_BYTES}")
