"""Temperature scaling and the calibration metrics (pcam_scan.evaluation.calibration)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from pcam_scan.evaluation.calibration import (
    binary_logits,
    brier,
    calibration_report,
    ece,
    fit_temperature,
    nll,
    reliability,
)
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.slide_auc import BootstrapSettings


def _calibrated_patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Margins z whose sigmoid is the true P(tumour), and labels drawn from it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return z, labels


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_logits_multiplied_by_5_are_recovered_and_their_ece_falls() -> None:
    z, labels = _calibrated_patches(10_000, seed=1)
    overconfident = np.stack([np.zeros_like(z), 5.0 * z], axis=1)
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(5.0, rel=0.10)
    before = ece(_sigmoid(5.0 * z), labels)
    after = ece(_sigmoid(5.0 * z / temperature), labels)
    assert before > 0.05
    assert after <= 0.02


def test_the_fitted_temperature_minimises_the_nll() -> None:
    z, labels = _calibrated_patches(2000, seed=2)
    logits = np.stack([np.zeros_like(z), 3.0 * z], axis=1)
    t = fit_temperature(logits, labels)
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * 0.97), nll(logits, labels, t * 1.03))


def test_binary_logits_give_back_the_probability_through_the_softmax() -> None:
    p = np.array([0.01, 0.3, 0.5, 0.99])
    logits = binary_logits(p)
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert soft[:, 1] == pytest.approx(p)


def test_brier_is_scikit_learns() -> None:
    z, labels = _calibrated_patches(500, seed=3)
    p = _sigmoid(z)
    assert brier(p, labels) == pytest.approx(brier_score_loss(labels, p))


def test_ece_by_hand_on_two_bins() -> None:
    # bin [0.2, 0.2667): two patches at 0.25, one tumour (rate 0.5); bin of 1.0: one patch, tumour
    p = np.array([0.25, 0.25, 1.0, 0.9])
    y = np.array([1, 0, 1, 0])
    expected = 2 / 4 * abs(0.25 - 0.5) + 1 / 4 * abs(1.0 - 1.0) + 1 / 4 * abs(0.9 - 0.0)
    assert ece(p, y, n_bins=15, scheme="width") == pytest.approx(expected)


def test_equal_mass_bins_hold_equal_counts() -> None:
    z, labels = _calibrated_patches(1500, seed=4)
    bins = reliability(_sigmoid(z), labels, n_bins=15, scheme="mass")
    assert set(bins.counts) == {100}


def test_the_report_has_intervals_around_its_figures() -> None:
    z, labels = _calibrated_patches(3000, seed=5)
    p = _sigmoid(3.0 * z)
    report = calibration_report(p, labels, BootstrapSettings(n_replicates=200, seed=0))
    assert report.brier.ci_low <= report.brier.value <= report.brier.ci_high
    assert report.ece_width.ci_low < report.ece_width.ci_high
    assert report.ece_width.ci_low <= report.ece_width.value + 0.01
    doc = report.to_dict()
    assert doc["n"] == 3000 and doc["n_bins"] == 15


def test_bad_inputs_are_one_error() -> None:
    with pytest.raises(EvaluationError, match="in \\[0, 1\\]"):
        ece(np.array([1.2]), np.array([1]))
    with pytest.raises(EvaluationError, match="labels"):
        brier(np.array([0.2]), np.array([2]))
    with pytest.raises(EvaluationError, match="logits"):
        fit_temperature(np.zeros(3), np.zeros(3))
