"""Temperature scaling at the end of training: one T fitted on the valid split's logits, the
calibration figures of every evaluated split before and after it, and their reliability diagrams.

The fit and the figures are `pcam_scan.evaluation.calibration` (numpy); this module only feeds
them the learner's predictions and names the report files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pcam_scan.evaluation.calibration import CalibrationReport, calibration_report, fit_temperature, nll
from pcam_scan.evaluation.plots import plot_reliability
from pcam_scan.model.calibrate import probabilities
from pcam_scan.model.metadata import Calibration
from pcam_scan.wording import count_noun
from training.metrics import SplitPredictions
from training.sources import TUMOUR_INDEX

RELIABILITY_PNG = "reliability_{split}.png"


@dataclass(frozen=True)
class TrainingCalibration:
    """The valid split's temperature (None when it could not be fitted) and, per evaluated
    split, its calibration reports keyed by curve name (raw softmax, then T = ...)."""

    calibration: Calibration | None
    reports: dict[str, dict[str, CalibrationReport]]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "temperature": self.temperature,
            "fitted_on": None if self.calibration is None else self.calibration.data,
            "splits": {
                name: {BEFORE if i == 0 else AFTER: r.to_dict() for i, r in enumerate(curves.values())}
                for name, curves in self.reports.items()
            },
        }
        if self.reason:
            doc["reason"] = self.reason
        return doc

    @property
    def temperature(self) -> float | None:
        return None if self.calibration is None else self.calibration.temperature

    def valid_ece(self) -> dict[str, float]:
        """Checkpoint metrics: the valid ECE (15 equal-width bins) before and after scaling."""
        curves = list(self.reports.get("valid", {}).values())
        if self.calibration is None or len(curves) < 2:
            return {}
        return {"valid_ece_uncalibrated": curves[0].ece_width.value, "valid_ece": curves[1].ece_width.value}


BEFORE, AFTER = "before", "after"


def fit_calibration(predictions: dict[str, SplitPredictions], data_description: str) -> TrainingCalibration:
    """One temperature on the valid split's logits (none when valid lacks a class: the NLL
    then has no minimum), and every split's figures before and after it."""
    valid = predictions.get("valid")
    calibration = None
    reason = ""
    if valid is None or valid.logits is None or len(np.unique(valid.targets)) < 2:
        reason = "the valid split needs both classes to fit a temperature"
    else:
        targets = np.where(valid.targets == 1, TUMOUR_INDEX, 1 - TUMOUR_INDEX)
        temperature = fit_temperature(valid.logits, targets)
        calibration = Calibration(
            temperature=temperature,
            data=f"{data_description}, valid split, {count_noun(len(valid.targets), 'patch')}",
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            nll_before=nll(valid.logits, targets),
            nll_after=nll(valid.logits, targets, temperature),
        )
    reports: dict[str, dict[str, CalibrationReport]] = {}
    for name, split in predictions.items():
        if split.logits is None or not len(split.targets):
            continue
        curves = {"raw softmax": calibration_report(probabilities(split.logits, TUMOUR_INDEX), split.targets)}
        if calibration is not None:
            scaled = probabilities(split.logits, TUMOUR_INDEX, calibration.temperature)
            curves[f"T = {calibration.temperature:.3g}"] = calibration_report(scaled, split.targets)
        reports[name] = curves
    return TrainingCalibration(calibration, reports, reason)


def plot_calibration(result: TrainingCalibration, folder: Path) -> None:
    """reliability_{split}.png: before and (when fitted) after temperature scaling."""
    for name, curves in result.reports.items():
        plot_reliability(curves, folder / RELIABILITY_PNG.format(split=name), f"{name} patches")
