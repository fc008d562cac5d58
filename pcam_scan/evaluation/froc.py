"""Lesion-level FROC, replicating the official Camelyon16 `Evaluation_FROC.py` to the letter.

Per slide (`score_slide`, the official `compute_FP_TP_Probs`):
- normal slide: every detection is a false positive;
- tumour slide: a detection is looked up in the evaluation mask at (Y // 2**level, X // 2**level);
  label 0 (outside every grown lesion) -> false positive; an ITC region -> ignored, neither way;
  a lesion -> the lesion's TP confidence becomes the detection's confidence if larger. So only the
  best detection per lesion counts, and further hits on an already-hit lesion are neither true nor
  false positives. TP confidences are kept in a float32 array with one entry per region (0 for
  missed lesions and for ITC regions), exactly as the official `TP_probs`.

Whole set (`froc_curve`, the official `computeFROC`):
- thresholds = the sorted distinct values of all FP and all TP confidences (the zeros included),
  WITHOUT the smallest one (`all_probs[1:]`);
- at each threshold t: FPs = #(FP confidences >= t), TPs = #(TP confidences >= t); then one last
  point (0, 0) is appended;
- FPs per slide = FPs / number of slides evaluated; sensitivity = TPs / number of non-ITC lesions.
  The TP comparison happens in float32, as NumPy does for a float32 array against a Python float.

`froc_curve(..., keep_lowest=True)` sweeps the confidence of every detection, the smallest
included (and a missed lesion's 0 never counts as found): NOT the official
score, reported beside it because dropping the lowest threshold means that detections at the
lowest confidence never count (a run that finds every lesion at one confidence with no false
positive scores 0.667, not 1).

Score (`froc_score`, as NCRF's copy of the script computes it): `np.interp` of the sensitivity at
0.25, 0.5, 1, 2, 4 and 8 FPs per slide on the reversed curve, and their mean. Outside the curve's
FP range `np.interp` holds the end values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.mask import EvaluationMask

FP_RATES_PER_SLIDE: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
OFFICIAL_SWEEP_RULE = (
    "Official Camelyon16 sweep (Evaluation_FROC.py): the thresholds are the distinct confidences "
    "of all false and true positives WITHOUT the lowest one, so detections at the lowest "
    "confidence never count; sensitivities at 0.25-8 FPs per slide are interpolated and averaged."
)
KEEP_LOWEST_NOTE = "NOT the official score: the same sweep keeping the lowest threshold, so every detection counts."


@dataclass(frozen=True)
class DetectionTable:
    """One slide's point detections: confidence and integer level-0 X, Y (challenge CSV rows)."""

    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    l0_x: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    l0_y: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if len(self.l0_x) != n or len(self.l0_y) != n:
            raise EvaluationError("detections need as many X and Y as confidences")
        if n and not np.isfinite(np.asarray(self.confidence, dtype=np.float64)).all():
            raise EvaluationError("a detection confidence is not a finite number")

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def from_points(cls, points: Sequence[tuple[float, float, float]]) -> DetectionTable:
        """From (confidence, l0_x, l0_y) triples; X and Y are floored to whole pixels."""
        arr = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return cls(
            confidence=arr[:, 0].copy(),
            l0_x=np.floor(arr[:, 1]).astype(np.int64),
            l0_y=np.floor(arr[:, 2]).astype(np.int64),
        )


@dataclass(frozen=True)
class SlideHits:
    """What one slide contributes to the FROC."""

    name: str
    fp_confidences: np.ndarray
    tp_confidences: np.ndarray
    """float32, one per region of the evaluation mask; 0 for missed lesions and ITC regions."""
    n_lesions: int
    n_itc_hits: int = 0

    @property
    def n_detected(self) -> int:
        return int(np.count_nonzero(self.tp_confidences))


def score_slide(name: str, detections: DetectionTable, mask: EvaluationMask | None) -> SlideHits:
    """True and false positives of one slide; `mask` is None for a normal slide."""
    confidences = np.asarray(detections.confidence, dtype=np.float64)
    if mask is None:
        return SlideHits(name, confidences.copy(), np.zeros(0, dtype=np.float32), 0)
    labels = mask.labels_at(detections.l0_x, detections.l0_y)
    tp = np.zeros(mask.n_labels, dtype=np.float32)
    n_itc_hits = 0
    for confidence, label in zip(confidences.tolist(), labels.tolist()):
        if label == 0:
            continue
        if label in mask.itc_labels:
            n_itc_hits += 1
        elif confidence > tp[label - 1]:
            tp[label - 1] = confidence
    return SlideHits(name, confidences[labels == 0], tp, mask.n_lesions, n_itc_hits)


@dataclass(frozen=True)
class FrocCurve:
    """Average FPs per slide and sensitivity at each threshold (the last point is (0, 0))."""

    thresholds: np.ndarray
    """The threshold of each point; +inf for the appended (0, 0)."""
    fps_per_slide: np.ndarray
    sensitivity: np.ndarray
    n_slides: int
    n_lesions: int


def froc_curve(slides: Sequence[SlideHits], keep_lowest: bool = False) -> FrocCurve:
    """The official threshold sweep over all slides' FP and TP confidences (`keep_lowest`: the
    unofficial sweep that keeps the smallest threshold too)."""
    if not slides:
        raise EvaluationError("no slides to evaluate")
    n_lesions = sum(s.n_lesions for s in slides)
    if n_lesions == 0:
        raise EvaluationError("the FROC needs at least one lesion that is not ITC")
    fps = np.sort(np.concatenate([s.fp_confidences for s in slides]).astype(np.float64))
    tps = np.sort(np.concatenate([s.tp_confidences for s in slides]).astype(np.float32))
    if keep_lowest:  # every detection's confidence; a missed lesion (TP 0) is never detected
        tps = tps[tps > 0]
        thresholds = np.unique(np.concatenate([fps, tps.astype(np.float64)]))
    else:
        thresholds = np.unique(np.concatenate([fps, tps.astype(np.float64)]))[1:]
    fp_counts = fps.size - np.searchsorted(fps, thresholds, side="left")
    tp_counts = tps.size - np.searchsorted(tps, thresholds.astype(np.float32), side="left")
    return FrocCurve(
        thresholds=np.append(thresholds, np.inf),
        fps_per_slide=np.append(fp_counts, 0) / float(len(slides)),
        sensitivity=np.append(tp_counts, 0) / float(n_lesions),
        n_slides=len(slides),
        n_lesions=n_lesions,
    )


@dataclass(frozen=True)
class FrocScore:
    """Sensitivity at each FP rate and their mean, the Camelyon16 lesion-level score."""

    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    n_lesions: int = 0

    @property
    def score(self) -> float:
        return float(np.mean(self.sensitivities))

    @property
    def lesions_detected(self) -> tuple[float, ...]:
        """Lesions detected at each FP rate (sensitivity x lesions; interpolated, so it may be
        fractional between two points of the curve)."""
        return tuple(s * self.n_lesions for s in self.sensitivities)


def froc_score(curve: FrocCurve, fp_rates: Sequence[float] = FP_RATES_PER_SLIDE) -> FrocScore:
    """Sensitivities interpolated at `fp_rates` FPs per slide, as the official code does."""
    if not fp_rates or not all(math.isfinite(r) and r >= 0 for r in fp_rates):
        raise EvaluationError(f"FP rates {tuple(fp_rates)} must be finite and >= 0")
    values = np.interp(fp_rates, curve.fps_per_slide[::-1], curve.sensitivity[::-1])
    return FrocScore(tuple(float(r) for r in fp_rates), tuple(float(v) for v in values), curve.n_lesions)
