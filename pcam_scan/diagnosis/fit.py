"""Fitting the learned aggregator on labelled slides, with stratified cross-validation.

scikit-learn does the fitting (StandardScaler + LogisticRegression); what is kept is only the
scaler's mean/scale and the regression's coefficients, as an `Aggregator` saved as JSON. The
cross-validated AUC (out-of-fold probabilities of models that never saw the slide) is what the
user reads to judge the aggregator; the final model is refitted on all slides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pcam_scan import __version__
from pcam_scan.defaults import AGGREGATOR_C, AGGREGATOR_FOLDS, DECISION_THRESHOLD
from pcam_scan.diagnosis.aggregator import Aggregator, AggregatorError
from pcam_scan.diagnosis.features import FeatureSettings
from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.calibration import CalibrationReport, calibration_report
from pcam_scan.validation import check_probability, check_seed
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class FitSettings:
    """Cross-validation folds, inverse regularisation C, random seed, and the decision threshold."""

    folds: int = AGGREGATOR_FOLDS
    c: float = AGGREGATOR_C
    seed: int = 0
    threshold: float = DECISION_THRESHOLD
    max_iter: int = 5000

    def __post_init__(self) -> None:
        if not 2 <= self.folds <= 100:
            raise ConfigError(f"cross-validation folds {self.folds} must lie in [2, 100]")
        if not (math.isfinite(self.c) and self.c > 0):
            raise ConfigError(f"regularisation C {self.c} must be > 0")
        check_probability("decision threshold", self.threshold)
        check_seed("--seed", self.seed)
        if self.max_iter < 100:
            raise ConfigError(f"max_iter {self.max_iter} must be >= 100")


@dataclass(frozen=True)
class FitReport:
    """The fitted aggregator and how well it did out of fold."""

    aggregator: Aggregator
    cv_auc: float
    """AUC of the pooled out-of-fold probabilities."""
    fold_aucs: tuple[float, ...]
    folds: int
    oof_probabilities: tuple[float, ...]
    calibration: CalibrationReport
    """Brier and ECE of the pooled out-of-fold probabilities (a held-out view of the model)."""


def _feature_matrix(rows: Sequence[Mapping[str, float]], names: tuple[str, ...]) -> np.ndarray:
    matrix = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, row in enumerate(rows):
        missing = [n for n in names if n not in row]
        if missing:
            raise AggregatorError(f"slide {i} lacks the features {', '.join(missing)}")
        matrix[i] = [row[n] for n in names]
    if not np.isfinite(matrix).all():
        raise AggregatorError("features hold a non-finite value")
    return matrix


def fit_aggregator(
    feature_rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    feature_settings: FeatureSettings,
    settings: FitSettings,
    source: str = "",
) -> FitReport:
    """Fit a logistic-regression aggregator; folds are capped at the smaller class's size."""
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(feature_rows) != len(labels):
        raise AggregatorError(f"{len(feature_rows)} feature rows but {count_noun(len(labels), 'label')}")
    names = feature_settings.names()
    x = _feature_matrix(feature_rows, names)
    y = np.asarray([bool(v) for v in labels], dtype=np.int64)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if min(n_pos, n_neg) < 2:
        raise AggregatorError(f"fitting needs at least 2 positive and 2 negative slides, got {n_pos} and {n_neg}")
    folds = min(settings.folds, n_pos, n_neg)

    def new_model() -> Pipeline:
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=settings.c, max_iter=settings.max_iter),
        )

    oof = np.empty(y.size, dtype=np.float64)
    fold_aucs: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.seed)
    for train_idx, test_idx in splitter.split(x, y):
        model = new_model()
        model.fit(x[train_idx], y[train_idx])
        oof[test_idx] = model.predict_proba(x[test_idx])[:, 1]
        fold_aucs.append(float(roc_auc_score(y[test_idx], oof[test_idx])))
    cv_auc = float(roc_auc_score(y, oof))
    calibration = calibration_report(oof, y)

    final = new_model()
    final.fit(x, y)
    scaler = final[0]
    regression = final[1]
    aggregator = Aggregator(
        feature_settings=feature_settings,
        feature_names=names,
        mean=tuple(float(v) for v in scaler.mean_),
        scale=tuple(float(v) for v in scaler.scale_),
        coefficients=tuple(float(v) for v in regression.coef_[0]),
        intercept=float(regression.intercept_[0]),
        threshold=settings.threshold,
        training={
            "n_slides": int(y.size),
            "n_positive": n_pos,
            "n_negative": n_neg,
            "cv_folds": folds,
            "cv_auc": cv_auc,
            "cv_fold_aucs": fold_aucs,
            "cv_calibration": _calibration_summary(calibration),
            "c": settings.c,
            "seed": settings.seed,
            "source": source,
            "sklearn_version": sklearn.__version__,
            "pcam_scan_version": __version__,
        },
    )
    return FitReport(
        aggregator=aggregator,
        cv_auc=cv_auc,
        fold_aucs=tuple(fold_aucs),
        folds=folds,
        oof_probabilities=tuple(float(v) for v in oof),
        calibration=calibration,
    )


def _calibration_summary(report: CalibrationReport) -> dict[str, object]:
    """Brier and both ECEs with their intervals (the bins stay out of the aggregator file)."""
    doc = report.to_dict()
    return {k: doc[k] for k in ("n", "brier", "ece_equal_width", "ece_equal_mass", "n_bins", "convention", "bootstrap")}
