"""Is P(tumour) a probability? Temperature scaling, Brier score, ECE and reliability bins (numpy only).

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", reference code
gpleiss/temperature_scaling): one scalar T divides every logit before the softmax; it changes no
ranking (AUC is unchanged) and is fitted by minimising the negative log likelihood of labelled
patches. The NLL of softmax(s * z) is convex in s = 1/T, so a golden-section search over log s on a
bounded interval finds the optimum deterministically (no optimiser state, no random start).

ECE convention: binary, **P(tumour) against the tumour rate** in each bin (the reliability of the
positive class, torchmetrics' `BinaryCalibrationError` and netcal's 1-D convention), not Guo's
top-label confidence max(p, 1 - p). The scanner's consumers (the heatmap's colour scale, the
lesion threshold, the diagnosis) read P(tumour) itself at thresholds other than 0.5, so it is
that number whose reliability matters; top-label ECE folds p and 1 - p together and reports a
smaller figure for the same model. Equal-width bins are [lo, hi) with the last one closed at 1;
equal-mass bins are consecutive runs of the sorted probabilities (`np.array_split`, netcal's
`equal_intervals=False`). Brier is mean((p - y)^2), scikit-learn's `brier_score_loss`.

Bootstrap intervals resample the patches with replacement. So that millions of heatmap cells cost
no more than a few thousand patches, each replicate draws counts over fine groups (the sample cut
into `FINE_PER_BIN` groups per bin, times the label) from a multinomial and uses each group's
mean probability and mean squared error: the replicate figures are exact up to the spread of P
inside one fine group (1/960 of the unit interval for 15 equal-width bins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pcam_scan.defaults import CALIBRATION_BINS, TEMPERATURE_RANGE
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.slide_auc import BootstrapSettings

BinScheme = Literal["width", "mass"]
FINE_PER_BIN = 64
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_SEARCH_STEPS = 100


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    out: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log likelihood of softmax(logits / T) for class indices `targets`."""
    z = np.asarray(logits, np.float64) / temperature
    picked = _log_softmax(z)[np.arange(len(z)), np.asarray(targets, np.int64)]
    return float(-picked.mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE minimising the NLL of softmax(logits / T) (N x C logits).

    Golden-section search on log(1/T): the NLL is convex in 1/T, hence unimodal in its log.
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(targets, np.int64)
    if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(y):
        raise EvaluationError(f"temperature fitting needs N x C logits and N labels, got {z.shape} and {y.shape}")
    if len(z) == 0:
        raise EvaluationError("temperature fitting needs at least one labelled patch")
    if not np.isfinite(z).all():
        raise EvaluationError("a logit is not a finite number")
    low, high = math.log(1.0 / TEMPERATURE_RANGE[1]), math.log(1.0 / TEMPERATURE_RANGE[0])

    def loss(log_s: float) -> float:
        return nll(z, y, 1.0 / math.exp(log_s))

    a, b = low, high
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(_SEARCH_STEPS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = loss(d)
    return 1.0 / math.exp((a + b) / 2.0)


def binary_logits(probabilities: np.ndarray) -> np.ndarray:
    """N x 2 logits (up to a per-row constant, which softmax ignores) of P(positive)."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0 - 1e-12)
    return np.stack([np.log1p(-p), np.log(p)], axis=1)


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p, y = _checked(probabilities, labels)
    return float(np.mean((p - y) ** 2))


def bin_index(probabilities: np.ndarray, n_bins: int, scheme: BinScheme) -> np.ndarray:
    """Each probability's bin (0..n_bins-1): equal-width [lo, hi) bins (1.0 in the last), or
    equal-mass runs of the sorted probabilities (ties broken by input order)."""
    p = np.asarray(probabilities, np.float64)
    if scheme == "width":
        return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    order = np.argsort(p, kind="stable")
    index = np.empty(len(p), np.int64)
    for b, run in enumerate(np.array_split(order, n_bins)):
        index[run] = b
    return index


@dataclass(frozen=True)
class ReliabilityBins:
    """Per bin: patch count, mean P(tumour), tumour rate (NaN for an empty bin)."""

    scheme: BinScheme
    counts: tuple[int, ...]
    mean_probability: tuple[float, ...]
    positive_rate: tuple[float, ...]

    @property
    def ece(self) -> float:
        n = sum(self.counts)
        return sum(
            c / n * abs(m - r)
            for c, m, r in zip(self.counts, self.mean_probability, self.positive_rate)
            if c  # an empty bin weighs nothing
        )


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = CALIBRATION_BINS, scheme: BinScheme = "width"
) -> ReliabilityBins:
    p, y = _checked(probabilities, labels)
    index = bin_index(p, n_bins, scheme)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=n_bins) / counts
        rate = np.bincount(index, weights=y, minlength=n_bins) / counts
    return ReliabilityBins(
        scheme, tuple(int(c) for c in counts), tuple(float(v) for v in mean_p), tuple(float(v) for v in rate)
    )


def ece(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = CALIBRATION_BINS, scheme: BinScheme = "width"
) -> float:
    """Expected calibration error: sum over bins of (share of patches) * |mean P - tumour rate|."""
    return reliability(probabilities, labels, n_bins, scheme).ece


@dataclass(frozen=True)
class Interval:
    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class CalibrationReport:
    """Brier and both ECEs with bootstrap intervals, and the bins of both reliability diagrams."""

    n: int
    n_positive: int
    brier: Interval
    ece_width: Interval
    ece_mass: Interval
    bins_width: ReliabilityBins
    bins_mass: ReliabilityBins
    level: float
    n_replicates: int
    seed: int

    def to_dict(self) -> dict[str, object]:
        def bins(b: ReliabilityBins) -> dict[str, object]:
            rate = [None if math.isnan(v) else v for v in b.positive_rate]
            mean = [None if math.isnan(v) else v for v in b.mean_probability]
            return {"counts": list(b.counts), "mean_probability": mean, "positive_rate": rate}

        return {
            "n": self.n,
            "n_positive": self.n_positive,
            "brier": self.brier.to_dict(),
            "ece_equal_width": self.ece_width.to_dict(),
            "ece_equal_mass": self.ece_mass.to_dict(),
            "n_bins": len(self.bins_width.counts),
            "convention": "binary: P(tumour) against the tumour rate per bin",
            "bootstrap": {"level": self.level, "replicates": self.n_replicates, "seed": self.seed},
            "bins_equal_width": bins(self.bins_width),
            "bins_equal_mass": bins(self.bins_mass),
        }


def calibration_report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    bootstrap: BootstrapSettings | None = None,
    n_bins: int = CALIBRATION_BINS,
) -> CalibrationReport:
    """Brier, equal-width and equal-mass ECE of P(tumour) against 0/1 labels, each with its
    percentile bootstrap interval (see the module docstring for the grouped resampling)."""
    settings = bootstrap or BootstrapSettings()
    p, y = _checked(probabilities, labels)
    if len(p) == 0:
        raise EvaluationError("calibration metrics need at least one labelled prediction")
    rng = np.random.default_rng(settings.seed)
    tail = (1.0 - settings.level) / 2.0 * 100.0
    figures = {}
    for scheme in ("width", "mass"):
        fine = bin_index(p, n_bins * FINE_PER_BIN, scheme)
        group = fine * 2 + y.astype(np.int64)
        n_groups = n_bins * FINE_PER_BIN * 2
        counts = np.bincount(group, minlength=n_groups)
        sum_p = np.bincount(group, weights=p, minlength=n_groups)
        sum_sq = np.bincount(group, weights=(p - y) ** 2, minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_p = np.where(counts > 0, sum_p / counts, 0.0)
            mean_sq = np.where(counts > 0, sum_sq / counts, 0.0)
        draws = rng.multinomial(len(p), counts / len(p), size=settings.n_replicates)  # (R, groups)
        coarse = (np.arange(n_groups) // 2) // FINE_PER_BIN
        positive = (np.arange(n_groups) % 2).astype(np.float64)
        bin_n = np.zeros((settings.n_replicates, n_bins))
        bin_p = np.zeros((settings.n_replicates, n_bins))
        bin_y = np.zeros((settings.n_replicates, n_bins))
        for b in range(n_bins):
            sel = coarse == b
            bin_n[:, b] = draws[:, sel].sum(axis=1)
            bin_p[:, b] = draws[:, sel] @ mean_p[sel]
            bin_y[:, b] = draws[:, sel] @ positive[sel]
        replicate_ece = np.abs(bin_p - bin_y).sum(axis=1) / len(p)
        figures[scheme] = np.percentile(replicate_ece, [tail, 100.0 - tail])
        if scheme == "width":
            replicate_brier = draws @ mean_sq / len(p)
            figures["brier"] = np.percentile(replicate_brier, [tail, 100.0 - tail])
    bins_width = reliability(p, y, n_bins, "width")
    bins_mass = reliability(p, y, n_bins, "mass")
    return CalibrationReport(
        n=len(p),
        n_positive=int(y.sum()),
        brier=Interval(brier(p, y), *map(float, figures["brier"])),
        ece_width=Interval(bins_width.ece, *map(float, figures["width"])),
        ece_mass=Interval(bins_mass.ece, *map(float, figures["mass"])),
        bins_width=bins_width,
        bins_mass=bins_mass,
        level=settings.level,
        n_replicates=settings.n_replicates,
        seed=settings.seed,
    )


def _checked(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise EvaluationError(f"{p.size} probabilities but {y.size} labels")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise EvaluationError("a probability is not a number in [0, 1]")
    if not np.isin(y, (0, 1)).all():
        raise EvaluationError("labels must be 0 (normal) or 1 (tumour)")
    return p, y.astype(np.float64)
