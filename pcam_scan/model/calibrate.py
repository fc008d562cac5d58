"""Calibrate an existing checkpoint: raw logits of labelled patches, one temperature, a new file.

The weights are copied unchanged (same model id); only the metadata gains a `calibration`
(`pcam_scan.model.metadata.Calibration`), which the scorer applies and a scan records in its
settings hash. The input checkpoint is never written: the output must be another path, and an
existing output is refused unless `overwrite`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.calibration import CalibrationReport, calibration_report, fit_temperature, nll
from pcam_scan.evaluation.slide_auc import BootstrapSettings
from pcam_scan.model.checkpoint import LoadedModel, save_checkpoint
from pcam_scan.model.metadata import Calibration
from pcam_scan.model.scoring import PatchScorer
from pcam_scan.outputs import check_output_file

LOGIT_BATCH = 256


def network_logits(loaded: LoadedModel, batches: Iterable[np.ndarray]) -> np.ndarray:
    """(N, C) raw logits of uint8 NHWC patch batches, on the model's device, no temperature."""
    scorer = PatchScorer(loaded.network, loaded.metadata).eval()
    device = next(loaded.network.parameters()).device
    out = []
    with torch.inference_mode():
        for batch in batches:
            out.append(scorer.raw_logits(torch.from_numpy(np.ascontiguousarray(batch)).to(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, loaded.metadata.n_classes), np.float32)


def probabilities(logits: np.ndarray, tumour_index: int, temperature: float = 1.0) -> np.ndarray:
    """P(tumour) = softmax(logits / T)[tumour], as the scorer computes it."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p: np.ndarray = e[:, tumour_index] / e.sum(axis=1)
    return p


@dataclass(frozen=True)
class TemperatureFit:
    """The temperature and the calibration figures of the patches before and after it (their
    negative log likelihood too: what the fit minimises, recorded in the checkpoint)."""

    temperature: float
    before: CalibrationReport
    after: CalibrationReport
    nll_before: float
    nll_after: float

    def to_dict(self) -> dict[str, object]:
        return {
            "temperature": self.temperature,
            "before": {**self.before.to_dict(), "nll": self.nll_before},
            "after": {**self.after.to_dict(), "nll": self.nll_after},
        }


def fit_on_logits(
    logits: np.ndarray, labels: np.ndarray, tumour_index: int, bootstrap: BootstrapSettings | None = None
) -> TemperatureFit:
    """One temperature for (N, C) logits and 0/1 tumour labels, with the figures around it."""
    targets = np.where(np.asarray(labels) == 1, tumour_index, 1 - tumour_index) if logits.shape[1] == 2 else labels
    temperature = fit_temperature(logits, targets)
    before = calibration_report(probabilities(logits, tumour_index), labels, bootstrap)
    after = calibration_report(probabilities(logits, tumour_index, temperature), labels, bootstrap)
    return TemperatureFit(temperature, before, after, nll(logits, targets), nll(logits, targets, temperature))


def check_calibrated_output(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], overwrite: bool) -> None:
    """The new checkpoint may be written: not the input file, new unless `overwrite`."""
    source, target = Path(checkpoint), Path(out)
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise ConfigError(f"--out {target} is the input checkpoint; calibration writes a new file")
    if target.resolve() == source.resolve():
        raise ConfigError(f"--out {target} is the input checkpoint; calibration writes a new file")
    check_output_file(target, overwrite)


def write_calibrated(
    loaded: LoadedModel,
    out: str | os.PathLike[str],
    temperature: float,
    data: str,
    nll_before: float | None = None,
    nll_after: float | None = None,
) -> str:
    """`loaded`'s weights with a calibration in the metadata at `out` (the temperature, what it
    was fitted on, the NLL before and after); returns the model id."""
    date = datetime.now(UTC).isoformat(timespec="seconds")
    calibration = Calibration(temperature, data, date, nll_before, nll_after)
    metadata = dataclasses.replace(loaded.metadata, calibration=calibration)
    return save_checkpoint(loaded.network, out, metadata)
