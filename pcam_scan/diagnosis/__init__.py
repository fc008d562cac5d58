"""Slide diagnoses from heatmaps: features, the default rule, the learned aggregator, the record.

scikit-learn is imported only when an aggregator is fitted (`pcam_scan.diagnosis.fit`).
"""

from pcam_scan.diagnosis.aggregator import (
    Aggregator,
    AggregatorError,
    load_aggregator,
    save_aggregator,
)
from pcam_scan.diagnosis.features import FeatureSettings, SlideFeatures, compute_features
from pcam_scan.diagnosis.record import Diagnosis, Scorer, diagnose, diagnose_heatmap
from pcam_scan.diagnosis.rule import DefaultRule, SizeCategory, size_category

__all__ = [
    "Aggregator",
    "AggregatorError",
    "DefaultRule",
    "Diagnosis",
    "FeatureSettings",
    "Scorer",
    "SizeCategory",
    "SlideFeatures",
    "compute_features",
    "diagnose",
    "diagnose_heatmap",
    "load_aggregator",
    "save_aggregator",
    "size_category",
]
