"""Camelyon16-style evaluation: reference.csv, slide-level ROC AUC with a bootstrap interval,
lesion-level FROC as the official script computes it, challenge CSVs, metrics JSON and plots.

See docs/evaluation.md for the protocol and where it departs from the official script.
"""

from pcam_scan.evaluation.artefacts import (
    read_detection_folder,
    read_detections,
    read_slide_probabilities,
    table_from_detections,
    write_challenge_artefacts,
    write_detections,
    write_slide_probabilities,
)
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.froc import (
    FP_RATES_PER_SLIDE,
    DetectionTable,
    FrocCurve,
    FrocScore,
    SlideHits,
    froc_curve,
    froc_score,
    score_slide,
)
from pcam_scan.evaluation.mask import (
    EvaluationMask,
    build_evaluation_mask,
    read_tumour_mask_tiff,
    tumour_mask_from_annotations,
)
from pcam_scan.evaluation.reference import (
    CAMELYON16_EXCLUDED,
    Reference,
    ReferenceEntry,
    read_reference,
)
from pcam_scan.evaluation.report import EvaluationResult, evaluate, metrics_dict, write_report
from pcam_scan.evaluation.slide_auc import AucResult, BootstrapSettings, slide_auc
from pcam_scan.evaluation.truth import SlideScale, TruthSources, load_evaluation_masks

__all__ = [
    "CAMELYON16_EXCLUDED",
    "FP_RATES_PER_SLIDE",
    "AucResult",
    "BootstrapSettings",
    "DetectionTable",
    "EvaluationError",
    "EvaluationMask",
    "EvaluationResult",
    "FrocCurve",
    "FrocScore",
    "Reference",
    "ReferenceEntry",
    "SlideHits",
    "SlideScale",
    "TruthSources",
    "build_evaluation_mask",
    "evaluate",
    "froc_curve",
    "froc_score",
    "load_evaluation_masks",
    "metrics_dict",
    "read_detection_folder",
    "read_detections",
    "read_reference",
    "read_slide_probabilities",
    "read_tumour_mask_tiff",
    "score_slide",
    "slide_auc",
    "table_from_detections",
    "tumour_mask_from_annotations",
    "write_challenge_artefacts",
    "write_detections",
    "write_report",
    "write_slide_probabilities",
]
