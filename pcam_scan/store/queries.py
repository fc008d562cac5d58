"""Queries over the slides of a heatmap store: their statuses, which are complete, a complete
slide's level-0 heatmap, and store slide ids matched to names from elsewhere (reference.csv).

Everything is read from level 0 of `prob` (the pyramid is for viewing), the tissue grid and the
cell grid the slide was scanned on, so sizes are in the slide's own units. Only complete slides
are read: a slide still being scanned, or one that failed, has no heatmap to diagnose. The
diagnosis itself is computed in `pcam_scan.diagnosis` and stored with `HeatmapStore.set_diagnosis`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pcam_scan.errors import StoreError
from pcam_scan.geometry import CellGrid
from pcam_scan.qc.flags import excluded_cells
from pcam_scan.store.reader import HeatmapReader
from pcam_scan.store.schema import SlideState, SlideStatus
from pcam_scan.store.validation import check_complete
from pcam_scan.wording import calibration_wording


@dataclass(frozen=True)
class StoredHeatmap:
    """One complete slide's level-0 heatmap (float32, NaN = not predicted), tissue and grid.

    With QC, `prob` is NaN at the cells QC excludes (ink, fold, bubble), so no consumer (lesions,
    detections, the slide's probability, exports, evaluation, render, the viewer) can count them;
    `qc_flags` are the slide's QC flags (None when QC was not run; the focus scores, which no
    consumer of a heatmap needs, are `HeatmapReader.read_qc`'s).
    """

    slide_id: str
    grid: CellGrid
    prob: np.ndarray = field(repr=False)
    tissue: np.ndarray = field(repr=False)
    qc_flags: np.ndarray | None = field(default=None, repr=False)

    @property
    def excluded(self) -> np.ndarray:
        """Cells QC kept out (all False without QC)."""
        if self.qc_flags is None:
            return np.zeros(self.tissue.shape, dtype=bool)
        return excluded_cells(self.qc_flags)


def describe_status(status: SlideStatus | None) -> str:
    """`complete`, `planned`, `failed: <message>`, or `unplanned` (a group without a status)."""
    if status is None:
        return "unplanned"
    if status.message:
        return f"{status.state.value}: {status.message}"
    return status.state.value


def slide_statuses(store: HeatmapReader) -> list[tuple[str, SlideStatus | None]]:
    """Every slide of the store with its status (None: planning never finished), by id."""
    return [(slide_id, store.slide_status(slide_id)) for slide_id in store.list_slides()]


def is_complete(status: SlideStatus | None) -> bool:
    return status is not None and status.state is SlideState.COMPLETE


def is_damaged(status: SlideStatus | None) -> bool:
    return status is not None and status.state is SlideState.DAMAGED


def read_heatmap(store: HeatmapReader, slide_id: str) -> StoredHeatmap:
    """The slide's level-0 heatmap, tissue, grid and QC; refused unless the slide is complete.

    The one place QC's exclusion is applied: the cells it excludes read as not predicted (NaN).
    """
    status = store.slide_status(slide_id)
    if not is_complete(status):
        raise StoreError(
            f"slide {slide_id!r} in {store.uri} is not complete ({describe_status(status)}); it has no heatmap to read"
        )
    prob = store.read_prob(slide_id, level=0)
    tissue = store.read_tissue(slide_id)
    check_complete(slide_id, prob, tissue, len(store.pending_blocks(slide_id)))
    flags = store.read_qc_flags(slide_id, level=0)
    if flags is not None:
        prob = np.where(excluded_cells(flags), np.float32(np.nan), prob).astype(np.float32)
    return StoredHeatmap(slide_id, store.read_grid(slide_id), prob, tissue, flags)


def match_slide_ids(names: Iterable[str], slide_ids: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Map names (e.g. reference.csv's `Test_001`) to store slide ids (`test_001`), ignoring case.

    Returns the matches and the names without a slide. Two slides whose ids differ only in case
    make a name ambiguous, which is refused rather than guessed.
    """
    by_key: dict[str, list[str]] = {}
    for slide_id in slide_ids:
        by_key.setdefault(slide_id.casefold(), []).append(slide_id)
    matched: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        found = by_key.get(name.casefold(), [])
        if len(found) > 1:
            raise StoreError(
                f"{name} matches several slides of the store ({', '.join(sorted(found))}); "
                "slide ids that differ only in case cannot be told apart"
            )
        if found:
            matched[name] = found[0]
        else:
            missing.append(name)
    return matched, missing


def listed(names: Sequence[str], limit: int = 5) -> str:
    """`a, b, c and 4 more`: names for a one-line message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def model_calibration(store: HeatmapReader) -> str:
    """Whether the store's model was calibrated and on what data, in words: `calibrated (T=...,
    on ...)` or `not calibrated`. A store before format version 3 did not record the data; its
    settings still say the temperature (in the settings hash since temperatures exist)."""
    recorded = store.recorded_calibration()
    if recorded is not None:
        return calibration_wording(recorded.temperature, recorded.fitted_on)
    temperature = store.run_settings().get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return calibration_wording(float(temperature), None)
    return calibration_wording(None, None)
