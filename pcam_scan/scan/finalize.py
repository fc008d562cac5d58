"""Finishing a slide whose blocks are all written: pyramid, status complete, default diagnosis.

A plain function of picklable arguments, so an executor can run it off the driver (a Ray task)
and the loop that consumes block results never stalls on a slide's 2-3 CPU-seconds.
"""

from __future__ import annotations

from collections.abc import Mapping

from pcam_scan.diagnosis.record import diagnose_stored_slide
from pcam_scan.diagnosis.rule import DefaultRule
from pcam_scan.errors import PcamScanError, describe_error
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.store import HeatmapStore
from pcam_scan.store.schema import StoredSlide


def finalize_slide(
    store: HeatmapStore, slide_id: str, path: str, seconds: Mapping[str, float], n_blocks: int
) -> SlideOutcome:
    """Pyramid and status complete (written last) for a slide whose blocks are all written, then
    the default-rule diagnosis (an aggregator can replace it later with `pcam-scan diagnose`)."""
    try:
        stored = store.finalize_slide(slide_id, seconds, {"blocks": n_blocks})
        diagnosis = diagnose_stored_slide(store, slide_id, DefaultRule())
    except PcamScanError as err:
        message = describe_error(err)
        store.mark_failed(slide_id, message)
        return SlideOutcome(slide_id, path, "failed", message)
    return stored_outcome(stored, slide_id, path, "complete", seconds, diagnosis.to_attrs())


def stored_outcome(
    stored: StoredSlide,
    slide_id: str,
    path: str,
    state: str,
    seconds: Mapping[str, float],
    diagnosis: Mapping[str, object] | None = None,
) -> SlideOutcome:
    """The outcome of a slide from what the store holds for it."""
    return SlideOutcome(
        slide_id,
        path,
        state,
        None,
        stored.predicted_cells or 0,
        stored.tissue_mm2 or 0.0,
        dict(seconds),
        dict(diagnosis if diagnosis is not None else stored.diagnosis or {}),
        stored.qc_verdict,
    )
