"""One line per slide for people: status, diagnosis and tumour area, from the store's records.

Shared by the viewer's slide list and the static renders' captions, so both say the same thing.
Everything comes from attributes the store already holds (no heatmap is read), so a batch of
hundreds of slides lists at once.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from pcam_scan.diagnosis.features import area_feature_name
from pcam_scan.diagnosis.record import Diagnosis
from pcam_scan.errors import StoreError
from pcam_scan.store import StoredSlide

TUMOUR_AREA_THRESHOLD = 0.5
_AREA_FEATURE = re.compile(r"^tumour_area_mm2_ge_(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class SlideSummary:
    """What the slide list shows; None where the store does not (yet) know."""

    slide_id: str
    state: str | None
    message: str | None
    probability: float | None = None
    call: str | None = None
    category: str | None = None
    largest_lesion_um: float | None = None
    tumour_area_mm2: float | None = None
    tumour_area_threshold: float | None = None
    tissue_mm2: float | None = None
    method: str | None = None
    decision_threshold: float | None = None
    qc_verdict: str | None = None
    """QC's verdict (pass, warn, not assessable); None when QC was not run."""
    qc_reason: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def verdict(self) -> str:
        """`positive (macro), p = 0.97` or `negative, p = 0.03` (empty without a diagnosis)."""
        if self.call is None or self.probability is None:
            return ""
        category = f" ({self.category})" if self.category and self.category != "negative" else ""
        return f"{self.call}{category}, p = {self.probability:.2f}"

    def caption(self) -> str:
        """`tumor_001: positive (macro), p = 0.97; largest lesion 2.40 mm; tumour 1.23 mm2`."""
        if self.call is None:
            state = self.state or "not scanned"
            detail = f": {self.message}" if self.message else ""
            return f"{self.slide_id}: {state}{detail}; no diagnosis"
        parts = [f"{self.slide_id}: {self.verdict()}"]
        if self.largest_lesion_um:
            parts.append(f"largest lesion {self.largest_lesion_um / 1000:.2f} mm")
        if self.tumour_area_mm2 is not None:
            parts.append(f"tumour {self.tumour_area_mm2:.2f} mm\u00b2 (p \u2265 {self.tumour_area_threshold:.2f})")
        parts.append(self.qc_caption())
        return "; ".join(parts)

    def qc_caption(self) -> str:
        """`QC pass`, `QC not assessable (40% of the tissue out of focus)` or `QC not run`."""
        if self.qc_verdict is None:
            return "QC not run"
        return f"QC {self.qc_verdict}" + (f" ({self.qc_reason})" if self.qc_reason else "")


def summarise(stored: StoredSlide) -> SlideSummary:
    """The summary of one stored slide; a malformed diagnosis is reported in `message`."""
    status = stored.status
    state = status.state.value if status is not None else None
    message = status.message if status is not None else None
    base = SlideSummary(
        slide_id=stored.slide_id,
        state=state,
        message=message,
        tissue_mm2=stored.tissue_mm2,
        qc_verdict=stored.qc_verdict,
        qc_reason=stored.qc_reason or None,
    )
    if stored.diagnosis is None:
        return base
    try:
        diagnosis = Diagnosis.from_attrs(stored.diagnosis)
    except StoreError as err:
        return SlideSummary(**{**asdict(base), "message": f"unreadable diagnosis: {err}"})
    area_threshold, area = _tumour_area(diagnosis)
    return SlideSummary(
        **{
            **asdict(base),
            "probability": diagnosis.probability,
            "call": diagnosis.call,
            "category": diagnosis.category,
            "largest_lesion_um": diagnosis.largest_lesion_um,
            "tumour_area_mm2": area,
            "tumour_area_threshold": area_threshold,
            "method": diagnosis.method,
            "decision_threshold": diagnosis.threshold,
        }
    )


def _tumour_area(diagnosis: Diagnosis) -> tuple[float | None, float | None]:
    """Tumour area from the diagnosis features: at p >= 0.5 when computed, else the lowest
    threshold the features have; (None, None) when they have none."""
    preferred = area_feature_name(TUMOUR_AREA_THRESHOLD)
    if preferred in diagnosis.features:
        return TUMOUR_AREA_THRESHOLD, float(diagnosis.features[preferred])
    found = sorted(
        (float(match.group(1)), name) for name in diagnosis.features if (match := _AREA_FEATURE.match(name)) is not None
    )
    if not found:
        return None, None
    threshold, name = found[0]
    return threshold, float(diagnosis.features[name])
