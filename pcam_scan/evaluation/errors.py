"""The evaluation's user-facing error."""

from __future__ import annotations

from pcam_scan.errors import PcamScanError


class EvaluationError(PcamScanError):
    """Evaluation inputs are missing, malformed or inconsistent (reference, predictions, masks)."""
