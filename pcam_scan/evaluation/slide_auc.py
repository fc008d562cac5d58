"""Slide-level ROC AUC with a seeded bootstrap 95% confidence interval.

The AUC is the Mann-Whitney statistic: the probability that a random tumour slide scores above a
random normal slide, ties counting one half; it equals scikit-learn's `roc_auc_score` (which the
official `Permutation_test.py` uses). The interval is a stratified percentile bootstrap: each
replicate resamples the tumour slides and the normal slides separately, with replacement, so
every replicate keeps both classes and their counts; the interval is the 2.5th and 97.5th
percentiles of the replicate AUCs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from pcam_scan.defaults import BOOTSTRAP_REPLICATES
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.validation import check_seed


@dataclass(frozen=True)
class BootstrapSettings:
    """Replicates, interval level and seed of the bootstrap."""

    n_replicates: int = BOOTSTRAP_REPLICATES
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 100 <= self.n_replicates <= 1_000_000:
            raise EvaluationError(f"bootstrap replicates {self.n_replicates} must lie in [100, 1000000]")
        if not 0.5 <= self.level < 1.0:
            raise EvaluationError(f"interval level {self.level} must lie in [0.5, 1)")
        check_seed("bootstrap seed", self.seed, EvaluationError)


@dataclass(frozen=True)
class AucResult:
    """The AUC, its bootstrap interval, and the ROC curve's points for plotting."""

    auc: float
    ci_low: float
    ci_high: float
    level: float
    n_replicates: int
    seed: int
    n_positive: int
    n_negative: int
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


def mann_whitney_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUC along the last axis; `scores` (..., n) and boolean `positive` (..., n)."""
    ranks = rankdata(scores, axis=-1)
    n_pos = positive.sum(axis=-1)
    n_neg = positive.shape[-1] - n_pos
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=-1)
    return np.asarray((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(p)[last_of_tie]
    fp = np.cumsum(~p)[last_of_tie]
    return (np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)])


def slide_auc(labels: Sequence[bool], probabilities: Sequence[float], settings: BootstrapSettings) -> AucResult:
    """Slide-level AUC of `probabilities` against tumour `labels`, with its bootstrap interval."""
    positive = np.asarray(labels, dtype=bool)
    scores = np.asarray(probabilities, dtype=np.float64)
    if positive.shape != scores.shape or positive.ndim != 1:
        raise EvaluationError(f"{positive.size} labels but {scores.size} probabilities")
    if not np.isfinite(scores).all():
        raise EvaluationError("a slide probability is not a finite number")
    pos_idx = np.nonzero(positive)[0]
    neg_idx = np.nonzero(~positive)[0]
    if pos_idx.size == 0 or neg_idx.size == 0:
        raise EvaluationError(f"the AUC needs tumour and normal slides, got {pos_idx.size} and {neg_idx.size}")
    auc = float(mann_whitney_auc(scores, positive))
    rng = np.random.default_rng(settings.seed)
    draw_pos = rng.choice(pos_idx, size=(settings.n_replicates, pos_idx.size), replace=True)
    draw_neg = rng.choice(neg_idx, size=(settings.n_replicates, neg_idx.size), replace=True)
    draws = np.concatenate([draw_pos, draw_neg], axis=1)
    replicate_positive = np.zeros(draws.shape, dtype=bool)
    replicate_positive[:, : pos_idx.size] = True
    replicates = mann_whitney_auc(scores[draws], replicate_positive)
    tail = (1.0 - settings.level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    fpr, tpr = roc_points(scores, positive)
    return AucResult(
        auc=auc,
        ci_low=float(low),
        ci_high=float(high),
        level=settings.level,
        n_replicates=settings.n_replicates,
        seed=settings.seed,
        n_positive=int(pos_idx.size),
        n_negative=int(neg_idx.size),
        fpr=tuple(float(v) for v in fpr),
        tpr=tuple(float(v) for v in tpr),
    )
