"""An evaluation end to end, into one folder: the tumour slides' ground truth, slide AUC and lesion
FROC, the cells' calibration (a store's heatmaps), the challenge artefacts (as the official
scripts read them), metrics.json and the plots."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pcam_scan.evaluation.artefacts import DETECTIONS_DIR, SLIDE_PROBABILITIES_CSV, write_challenge_artefacts
from pcam_scan.evaluation.cell_calibration import cell_calibration
from pcam_scan.evaluation.reference import Reference
from pcam_scan.evaluation.report import (
    FROC_PNG,
    METRICS_JSON,
    RELIABILITY_CELLS_PNG,
    RELIABILITY_SLIDES_PNG,
    ROC_PNG,
    EvaluationResult,
    evaluate,
    write_report,
)
from pcam_scan.evaluation.slide_auc import BootstrapSettings
from pcam_scan.evaluation.store_inputs import Predictions
from pcam_scan.evaluation.truth import TruthSources, load_evaluation_masks


def evaluation_outputs(out_dir: Path, names: Sequence[str]) -> list[Path]:
    """Every file `run_evaluation` writes under `out_dir` for these slides, to check first."""
    names_fixed = (
        SLIDE_PROBABILITIES_CSV,
        METRICS_JSON,
        ROC_PNG,
        FROC_PNG,
        RELIABILITY_SLIDES_PNG,
        RELIABILITY_CELLS_PNG,
    )
    fixed = [out_dir / name for name in names_fixed]
    return fixed + [out_dir / DETECTIONS_DIR / f"{name}.csv" for name in names]


def run_evaluation(
    reference: Reference,
    predictions: Predictions,
    truth: TruthSources,
    bootstrap: BootstrapSettings,
    out_dir: Path,
) -> tuple[EvaluationResult, Path]:
    """Evaluate the predictions against the tumour slides' masks or annotations and write every
    output under `out_dir`; the result and the path of metrics.json."""
    tumour_names = [e.name for e in reference.entries if e.is_tumour]
    loaded = load_evaluation_masks(tumour_names, truth, predictions.scales)
    masks = {n: m for n, (m, _) in loaded.items()}
    result = evaluate(reference, predictions.probabilities, predictions.detections, masks, bootstrap)
    if predictions.cells:  # a store's heatmaps: the cells against the same ground truth
        cells = cell_calibration(reference, predictions.cells, truth, bootstrap, predictions.cell_share)
        result = dataclasses.replace(result, cells=cells)
    write_challenge_artefacts(out_dir, result.probabilities, predictions.detections)
    metrics_path = write_report(result, out_dir, predictions.mpp_source, predictions.inputs)
    return result, metrics_path
