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
    """The QC of a block from its region (its cells plus `halo_px` around, at the read plane)."""
    on_tissue = np.asarray(tissue, dtype=bool)
    n_rows, n_cols = on_tissue.shape
    measures = cell_measures(region, halo_px, cell_px, n_rows, n_cols)
    flags = block_flags(measures, on_tissue, eosin_reference, settings)
    focus = np.where(on_tissue, measures.focus, np.nan).astype(np.float32)
    return BlockQc(flags, focus)
