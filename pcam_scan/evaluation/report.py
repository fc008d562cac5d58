"""A whole Camelyon16-style evaluation: slide AUC + lesion FROC, the calibration of slides and
(for a store) of heatmap cells, written as JSON and PNGs.

Inputs are plain data (reference, slide probabilities, detections, evaluation masks), so the
same code serves a heatmap store and users' own prediction files; `inputs` in metrics.json
records which it was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcam_scan.evaluation.calibration import CalibrationReport, calibration_report
from pcam_scan.evaluation.cell_calibration import CellCalibration
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.froc import (
    FP_RATES_PER_SLIDE,
    KEEP_LOWEST_NOTE,
    OFFICIAL_SWEEP_RULE,
    DetectionTable,
    FrocCurve,
    FrocScore,
    SlideHits,
    froc_curve,
    froc_score,
    score_slide,
)
from pcam_scan.evaluation.mask import (
    EVALUATION_LEVEL,
    GROWTH_TOTAL_UM,
    ITC_MAJOR_AXIS_UM,
    OFFICIAL_L0_MPP_UM_PX,
    EvaluationMask,
)
from pcam_scan.evaluation.plots import plot_froc, plot_reliability, plot_roc
from pcam_scan.evaluation.reference import Reference
from pcam_scan.evaluation.slide_auc import AucResult, BootstrapSettings, slide_auc
from pcam_scan.outputs import output_folder, write_output_text

METRICS_JSON = "metrics.json"
ROC_PNG = "roc.png"
FROC_PNG = "froc.png"
RELIABILITY_SLIDES_PNG = "reliability_slides.png"
RELIABILITY_CELLS_PNG = "reliability_cells.png"


@dataclass(frozen=True)
class EvaluationResult:
    """Everything an evaluation measured."""

    reference: Reference
    probabilities: Mapping[str, float]
    auc: AucResult
    hits: tuple[SlideHits, ...]
    curve: FrocCurve
    froc: FrocScore
    masks: Mapping[str, EvaluationMask]
    ignored_predictions: tuple[str, ...] = ()
    curve_keeping_lowest: FrocCurve | None = None
    """The unofficial sweep that keeps the lowest threshold (reported beside, never as, the score)."""
    cells: CellCalibration | None = None
    """The heatmap cells' calibration against the ground truth; None for predictions from files."""

    @property
    def froc_keeping_lowest(self) -> FrocScore | None:
        if self.curve_keeping_lowest is None:
            return None
        return froc_score(self.curve_keeping_lowest, self.froc.fp_rates)


def evaluate(
    reference: Reference,
    probabilities: Mapping[str, float],
    detections: Mapping[str, DetectionTable],
    masks: Mapping[str, EvaluationMask],
    bootstrap: BootstrapSettings,
) -> EvaluationResult:
    """Slide AUC and lesion FROC over the reference's slides.

    Every reference slide needs a probability and a detection table, and every tumour slide an
    evaluation mask. Probabilities of slides outside the reference are ignored and listed.
    """
    names = reference.names
    missing = [n for n in names if n not in probabilities]
    if missing:
        raise EvaluationError(f"no slide probability for {', '.join(missing[:5])}")
    missing = [n for n in names if n not in detections]
    if missing:
        raise EvaluationError(f"no detections for {', '.join(missing[:5])}")
    missing = [e.name for e in reference.entries if e.is_tumour and e.name not in masks]
    if missing:
        raise EvaluationError(f"no evaluation mask for tumour slide {', '.join(missing[:5])}")
    auc = slide_auc([e.is_tumour for e in reference.entries], [probabilities[n] for n in names], bootstrap)
    hits = tuple(
        score_slide(e.name, detections[e.name], masks[e.name] if e.is_tumour else None) for e in reference.entries
    )
    curve = froc_curve(hits)
    excluded = set(reference.excluded)
    ignored = tuple(sorted(n for n in probabilities if n not in set(names) and n not in excluded))
    return EvaluationResult(
        reference=reference,
        probabilities={n: probabilities[n] for n in names},
        auc=auc,
        hits=hits,
        curve=curve,
        froc=froc_score(curve, FP_RATES_PER_SLIDE),
        masks={n: masks[n] for n in names if n in masks},
        ignored_predictions=ignored,
        curve_keeping_lowest=froc_curve(hits, keep_lowest=True),
    )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def metrics_dict(
    result: EvaluationResult, mpp_source: str, inputs: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The metrics as plain JSON types; `inputs` (JSON types) says where the predictions came
    from (files, or a heatmap store with the scoring and detection settings)."""
    ref = result.reference
    slides = []
    for entry, hit in zip(ref.entries, result.hits):
        mask = result.masks.get(entry.name)
        slides.append(
            {
                "name": entry.name,
                "is_tumour": entry.is_tumour,
                "size_class": entry.size_class,
                "probability": result.probabilities[entry.name],
                "n_false_positives": int(hit.fp_confidences.size),
                "n_lesions": hit.n_lesions,
                "n_lesions_detected": hit.n_detected,
                "n_itc_regions": len(mask.itc_labels) if mask else 0,
                "n_itc_hits": hit.n_itc_hits,
                "mpp_um_px": mask.mpp_um_px if mask else None,
            }
        )
    return {
        "protocol": {
            "name": "camelyon16",
            "evaluation_level": EVALUATION_LEVEL,
            "growth_total_um": GROWTH_TOTAL_UM,
            "itc_major_axis_um": ITC_MAJOR_AXIS_UM,
            "official_l0_mpp_um_px": OFFICIAL_L0_MPP_UM_PX,
            "mpp_source": mpp_source,
            "fp_rates_per_slide": list(result.froc.fp_rates),
        },
        "reference": {
            "n_slides": len(ref.entries),
            "n_tumour": ref.n_tumour,
            "n_normal": len(ref.entries) - ref.n_tumour,
            "excluded": list(ref.excluded),
        },
        "slide_level": {
            "auc": result.auc.auc,
            "ci_low": result.auc.ci_low,
            "ci_high": result.auc.ci_high,
            "ci_level": result.auc.level,
            "bootstrap": "stratified percentile",
            "n_replicates": result.auc.n_replicates,
            "seed": result.auc.seed,
        },
        "slide_calibration": _calibration_dict(slide_calibration(result)),
        "cell_calibration": (
            result.cells.to_dict()
            if result.cells is not None
            else {"note": "not computed: prediction files hold no heatmap cells (evaluate a store)"}
        ),
        "lesion_level": {
            "froc_score": result.froc.score,
            "sweep_rule": OFFICIAL_SWEEP_RULE,
            "sensitivity_at_fp_rate": {f"{r:g}": s for r, s in zip(result.froc.fp_rates, result.froc.sensitivities)},
            "lesions_detected_at_fp_rate": {
                f"{r:g}": d for r, d in zip(result.froc.fp_rates, result.froc.lesions_detected)
            },
            "n_lesions": result.curve.n_lesions,
            **_keeping_lowest(result),
            "curve": {
                "threshold": [_finite_or_none(float(t)) for t in result.curve.thresholds],
                "fps_per_slide": [float(v) for v in result.curve.fps_per_slide],
                "sensitivity": [float(v) for v in result.curve.sensitivity],
            },
        },
        "slides": slides,
        "ignored_predictions": list(result.ignored_predictions),
        **({"inputs": dict(inputs)} if inputs is not None else {}),
    }


def slide_calibration(result: EvaluationResult) -> CalibrationReport | None:
    """Brier and ECE of the slide probabilities against the reference's tumour labels; None
    when a slide's score is not a probability in [0, 1] (a user's file may rank by any score)."""
    entries = result.reference.entries
    probs = np.asarray([result.probabilities[e.name] for e in entries], np.float64)
    if not (np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()):
        return None
    bootstrap = BootstrapSettings(n_replicates=result.auc.n_replicates, level=result.auc.level, seed=result.auc.seed)
    return calibration_report(probs, np.asarray([int(e.is_tumour) for e in entries]), bootstrap)


def _calibration_dict(report: CalibrationReport | None) -> dict[str, object]:
    if report is None:
        return {"note": "not computed: a slide score is not a probability in [0, 1]"}
    return report.to_dict()


def _keeping_lowest(result: EvaluationResult) -> dict[str, object]:
    """The unofficial score that keeps the lowest threshold, labelled as such."""
    score = result.froc_keeping_lowest
    if score is None:
        return {}
    return {
        "not_official_keeping_lowest_threshold": {
            "note": KEEP_LOWEST_NOTE,
            "froc_score": score.score,
            "sensitivity_at_fp_rate": {f"{r:g}": s for r, s in zip(score.fp_rates, score.sensitivities)},
            "lesions_detected_at_fp_rate": {f"{r:g}": d for r, d in zip(score.fp_rates, score.lesions_detected)},
        }
    }


def write_report(
    result: EvaluationResult,
    out_dir: str | Path,
    mpp_source: str,
    inputs: Mapping[str, object] | None = None,
) -> Path:
    """metrics.json, roc.png, froc.png and the reliability diagrams under `out_dir`; returns the
    metrics path."""
    with output_folder(Path(out_dir)) as root:  # no empty folder left when a write fails
        plot_roc(result.auc, root / ROC_PNG)
        plot_froc(result.curve, result.froc, root / FROC_PNG, result.curve_keeping_lowest)
        calibration = slide_calibration(result)
        if calibration is not None:
            plot_reliability(
                {"slides": calibration}, root / RELIABILITY_SLIDES_PNG, "Slide probability vs reference.csv"
            )
        if result.cells is not None:
            plot_reliability(
                {"cells": result.cells.report}, root / RELIABILITY_CELLS_PNG, "Heatmap cell probability vs tumour masks"
            )
        target = root / METRICS_JSON
        metrics = metrics_dict(result, mpp_source, inputs)
        write_output_text(target, json.dumps(metrics, indent=2, allow_nan=False) + "\n", overwrite=True)
    return target
