"""Patient-level agreement: Camelyon17's quadratic weighted kappa with a bootstrap interval.

The metric is the official CAMELYON17 evaluation script's: `sklearn.metrics.cohen_kappa_score(
reference, predicted, labels=['pn0', 'pn0(i+)', 'pn1mi', 'pn1', 'pn2'], weights='quadratic')`.
The explicit `labels` list is what orders the stages; without it sklearn sorts the names
alphabetically (pN1 before pN1mi) and the weights are wrong. The script scores every reference
patient; here a patient whose stage is `pN?` (a node not assessable, see
pcam_scan.diagnosis.staging) or who is not staged at all is left out and counted, never scored
as if its unknown nodes were negative. The interval is a percentile bootstrap over patients
(replicates where kappa is undefined, every patient in one stage in both, are dropped).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pcam_scan.diagnosis.staging import PN_STAGES, PNStage
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.slide_auc import BootstrapSettings


@dataclass(frozen=True)
class KappaResult:
    """Kappa over the scored patients, its interval, and who was left out and why."""

    kappa: float
    ci_low: float
    ci_high: float
    level: float
    n_replicates: int
    seed: int
    scored: tuple[str, ...]
    unstaged: tuple[str, ...]  # in the reference, but pN? or absent from the predictions

    def to_json(self) -> dict[str, object]:
        return {
            "metric": "quadratic weighted kappa (sklearn cohen_kappa_score, labels in pN order)",
            "labels": list(PN_STAGES),
            "kappa": self.kappa,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "level": self.level,
            "n_replicates": self.n_replicates,
            "seed": self.seed,
            "patients_scored": len(self.scored),
            "patients_unstaged": list(self.unstaged),
        }


def weighted_kappa(reference: Sequence[str], predicted: Sequence[str]) -> float:
    """Quadratic weighted kappa with the stages in pN order (NaN when undefined)."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(list(reference), list(predicted), labels=list(PN_STAGES), weights="quadratic"))


def quadratic_kappas(truth: np.ndarray, guess: np.ndarray, n_labels: int) -> np.ndarray:
    """Quadratic weighted kappa of each row of `truth` and `guess` (label indices, (R, n)), the
    bootstrap's replicates at once: 1 - sum w*O / sum w*E with w = (i - j)^2, as sklearn computes
    it (tests check the two agree); NaN where every patient is in one stage."""
    n = truth.shape[-1]
    observed = ((truth - guess).astype(np.float64) ** 2).sum(axis=-1)
    labels = np.arange(n_labels)
    truth_counts = (truth[..., None] == labels).sum(axis=-2).astype(np.float64)
    guess_counts = (guess[..., None] == labels).sum(axis=-2).astype(np.float64)
    weights = (labels[:, None] - labels[None, :]).astype(np.float64) ** 2
    expected = np.einsum("ri,ij,rj->r", truth_counts, weights, guess_counts) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(expected > 0, 1.0 - observed / expected, np.nan))


def stage_kappa(
    reference: Mapping[str, PNStage], predicted: Mapping[str, str], settings: BootstrapSettings
) -> KappaResult:
    """Kappa of `predicted` (patient -> stage or pN?) against `reference` (patient -> stage)."""
    scored = tuple(p for p in reference if predicted.get(p) in PN_STAGES)
    unstaged = tuple(p for p in reference if p not in scored)
    if not scored:
        raise EvaluationError("no reference patient has a complete predicted stage to score")
    truth = [reference[p] for p in scored]
    guess = [str(predicted[p]) for p in scored]
    kappa = weighted_kappa(truth, guess)
    index: dict[str, int] = {stage: i for i, stage in enumerate(PN_STAGES)}
    truth_i = np.array([index[s] for s in truth])
    guess_i = np.array([index[s] for s in guess])
    rng = np.random.default_rng(settings.seed)
    draws = rng.integers(0, len(scored), size=(settings.n_replicates, len(scored)))
    replicates = quadratic_kappas(truth_i[draws], guess_i[draws], len(PN_STAGES))
    replicates = replicates[np.isfinite(replicates)]
    tail = (1.0 - settings.level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail]) if replicates.size else (math.nan, math.nan)
    return KappaResult(
        kappa, float(low), float(high), settings.level, settings.n_replicates, settings.seed, scored, unstaged
    )
