"""QC bit flags on the cell grid, and the rules that set them.

One uint8 per cell; a cell may carry several reasons. INK, FOLD and BUBBLE are decided per block
from its measures (the block write stores them beside `prob`); BLUR needs the slide's own
in-focus reference, and the ink's reach crosses block borders, so both are decided at finalize
from the stored flags and focus scores (`slide_flags`).
EXCLUDING cells get no lesion, no detection point and no say in the slide's probability; BLUR
cells keep their probability and are flagged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from pcam_scan.qc.measures import CellMeasures
from pcam_scan.qc.settings import QcSettings

INK = 1
BLUR = 2
FOLD = 4
BUBBLE = 8
INK_NEARBY = 16
"""Ink near the cell but not on it: in the cell's patch (decided per block, ink on or off tissue),
or within `QcSettings.ink_reach_cells` of an ink cell (decided at finalize, `slide_flags`). The
model saw it, so the cell is excluded too (reported within the excluded share, not as ink: the
ink mask is where the ink is)."""
REASONS: dict[str, int] = {"ink": INK, "blur": BLUR, "fold": FOLD, "bubble": BUBBLE}
"""Each reason by name (the store's, qc.csv's and the viewer's spelling) and its bit."""
EXCLUDING = INK | FOLD | BUBBLE | INK_NEARBY

FlagCells = npt.NDArray[np.uint8]


def block_flags(
    measures: CellMeasures, tissue: npt.ArrayLike, eosin_reference: float, settings: QcSettings
) -> FlagCells:
    """INK, FOLD and BUBBLE of a block's tissue cells (0 off tissue). `eosin_reference` is the
    slide's typical tissue eosin density (its planning thumbnail); 0 or less disables folds."""
    on_tissue = np.asarray(tissue, dtype=bool)
    flags = np.zeros(on_tissue.shape, dtype=np.uint8)
    ink = measures.ink >= settings.ink_min_fraction
    flags[ink] |= INK
    flags[~ink & (measures.ink_patch >= settings.ink_nearby_fraction)] |= INK_NEARBY
    if eosin_reference > 0:
        dense = measures.eosin >= settings.fold_od_ratio * eosin_reference
        dense &= measures.eosin_light >= settings.fold_light_od_ratio * eosin_reference
        flags[~ink & dense] |= FOLD
    flags[~ink & (measures.rim >= settings.bubble_min_fraction)] |= BUBBLE
    flags[~on_tissue] = 0
    return flags


def ink_reach_flags(flags: npt.ArrayLike, tissue: npt.ArrayLike, settings: QcSettings) -> FlagCells:
    """The flags with INK_NEARBY also set on the tissue cells within `ink_reach_cells` (a square)
    of an ink cell: the slide-wide part of the ink exclusion, which a block cannot decide alone
    (its region reaches one cell beyond it). Idempotent."""
    out = np.array(flags, dtype=np.uint8)
    ink = (out & INK) != 0
    reach = settings.ink_reach_cells
    if reach > 0 and ink.any():
        near = ndimage.maximum_filter(ink, size=2 * reach + 1, mode="constant")
        out[near & ~ink & np.asarray(tissue, dtype=bool)] |= INK_NEARBY
    return out


def slide_flags(
    focus: npt.ArrayLike, flags: npt.ArrayLike, tissue: npt.ArrayLike, settings: QcSettings
) -> tuple[FlagCells, float]:
    """The flags decided over the whole slide at finalize, from the blocks' stored flags: the ink
    reach (`ink_reach_flags`), then BLUR against the slide's focus reference (`blur_flags`), which
    leaves the excluded cells out. Returns the flags and the focus reference. Idempotent."""
    return blur_flags(focus, ink_reach_flags(flags, tissue, settings), tissue, settings)


def focus_reference(focus: npt.ArrayLike, flags: npt.ArrayLike, tissue: npt.ArrayLike, settings: QcSettings) -> float:
    """The slide's in-focus reference: a high percentile of its tissue cells' focus scores
    (cells excluded for ink, fold or bubble left out); NaN without such a cell."""
    values = np.asarray(focus, dtype=np.float32)
    usable = np.asarray(tissue, dtype=bool) & (np.asarray(flags) & EXCLUDING == 0) & np.isfinite(values)
    if not usable.any():
        return float("nan")
    return float(np.percentile(values[usable], settings.focus_reference_percentile))


def blur_flags(
    focus: npt.ArrayLike, flags: npt.ArrayLike, tissue: npt.ArrayLike, settings: QcSettings
) -> tuple[FlagCells, float]:
    """The flags with BLUR set (afresh) on tissue cells below `blur_ratio` x the reference, and the
    reference itself. Idempotent: finalizing twice gives the same flags."""
    values = np.asarray(focus, dtype=np.float32)
    out = np.asarray(flags, dtype=np.uint8) & np.uint8(0xFF ^ BLUR)
    reference = focus_reference(values, out, tissue, settings)
    if np.isfinite(reference) and reference > 0:
        with np.errstate(invalid="ignore"):
            blurred = np.asarray(tissue, dtype=bool) & (values < settings.blur_ratio * reference)
        out[blurred] |= BLUR
    return out, reference


def excluded_cells(flags: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Cells kept out of lesions, detections and the slide's probability."""
    mask: npt.NDArray[np.bool_] = (np.asarray(flags, dtype=np.uint8) & EXCLUDING) != 0
    return mask
