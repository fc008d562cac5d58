"""A block's QC: its flags (ink, fold, bubble) and focus scores from its region, for the block's
one chunk write beside `prob` (the model stage or the read stage computes it where the region is)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pcam_scan.qc.flags import block_flags
from pcam_scan.qc.measures import cell_measures
from pcam_scan.qc.settings import QcSettings


@dataclass(frozen=True)
class BlockQc:
    """(n_rows, n_cols) uint8 flags (0 off tissue) and float32 focus scores (NaN off tissue)."""

    flags: npt.NDArray[np.uint8] = field(repr=False)
    focus: npt.NDArray[np.float32] = field(repr=False)


def measure_block(
    region: npt.NDArray[np.uint8],
    tissue: npt.ArrayLike,
    halo_px: int,
    cell_px: int,
    eosin_reference: float,
    settings: QcSettings,
) -> BlockQc:
    """The QC of a block from its region (its cells plus `halo_px` around, at the read plane).

    Only the bounding box of the block's tissue cells is measured (with its halo): flags and focus
    are for tissue alone, and about half of a block's cells lie off tissue (bench/qc.py's slides)."""
    on_tissue = np.asarray(tissue, dtype=bool)
    flags = np.zeros(on_tissue.shape, dtype=np.uint8)
    focus = np.full(on_tissue.shape, np.nan, dtype=np.float32)
    rows, cols = np.flatnonzero(on_tissue.any(axis=1)), np.flatnonzero(on_tissue.any(axis=0))
    if rows.size == 0:
        return BlockQc(flags, focus)
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    n_rows, n_cols = box[0].stop - box[0].start, box[1].stop - box[1].start
    crop = region[
        box[0].start * cell_px : box[0].stop * cell_px + 2 * halo_px,
        box[1].start * cell_px : box[1].stop * cell_px + 2 * halo_px,
    ]
    measures = cell_measures(crop, halo_px, cell_px, n_rows, n_cols)
    flags[box] = block_flags(measures, on_tissue[box], eosin_reference, settings)
    focus[box] = np.where(on_tissue[box], measures.focus, np.nan)
    return BlockQc(flags, focus)
