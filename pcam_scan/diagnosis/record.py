"""A slide's diagnosis as data: probability, call, threshold, pN size category, and evidence.

The record is what goes into the diagnoses CSV and into the slide's store attributes
(`to_attrs` gives plain JSON types; `from_attrs` reads them back and refuses anything else).

Category and call agree by construction: a negative call is category "negative" whatever the
lesions; a positive call takes the category of its largest lesion, and a positive call without
any lesion region at the lesion threshold (possible only when the decision threshold lies below
the lesion threshold) is "itc": tumour evidence smaller than one measurable region.

A slide whose QC verdict is "not assessable" (too much tissue excluded or out of focus) is never
called negative: its call becomes "not assessable" (category "negative": no lesion was found on
the tissue that could be read). A positive call on the assessable tissue stands.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from pcam_scan.diagnosis.features import FeatureSettings, SlideFeatures, compute_features
from pcam_scan.diagnosis.rule import SIZE_CATEGORIES, SizeCategory, size_category
from pcam_scan.errors import StoreError
from pcam_scan.geometry import CellGrid
from pcam_scan.store import HeatmapReader, HeatmapStore
from pcam_scan.store.queries import read_heatmap

Call = Literal["positive", "negative", "not assessable"]
NOT_ASSESSABLE: Call = "not assessable"


class Scorer(Protocol):
    """What turns features into a probability: the default rule or a learned aggregator."""

    @property
    def name(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def feature_settings(self) -> FeatureSettings: ...

    def probability(self, values: Mapping[str, float]) -> float: ...


@dataclass(frozen=True)
class Diagnosis:
    """One slide's diagnosis; `features` are the values it was made from."""

    probability: float
    call: Call
    threshold: float
    category: SizeCategory
    largest_lesion_um: float
    method: str
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def is_positive(self) -> bool:
        return self.call == "positive"

    def to_attrs(self) -> dict[str, object]:
        """Plain JSON types, for store attributes and JSON files."""
        return {
            "probability": self.probability,
            "call": self.call,
            "threshold": self.threshold,
            "category": self.category,
            "largest_lesion_um": self.largest_lesion_um,
            "method": self.method,
            "features": {k: float(v) for k, v in self.features.items()},
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object]) -> Diagnosis:
        """A diagnosis from `to_attrs`'s form; a malformed record raises `StoreError`."""
        call = attrs.get("call")
        category = attrs.get("category")
        method = attrs.get("method")
        features = attrs.get("features")
        if call not in ("positive", "negative", NOT_ASSESSABLE):
            raise StoreError(f"diagnosis call {call!r} is not positive, negative or not assessable")
        if category not in SIZE_CATEGORIES:
            raise StoreError(f"diagnosis category {category!r} is not one of {SIZE_CATEGORIES}")
        if not isinstance(method, str):
            raise StoreError("diagnosis method must be a string")
        if not isinstance(features, dict):
            raise StoreError("diagnosis features must be an object")
        return cls(
            probability=_attr_float(attrs, "probability"),
            call=call,
            threshold=_attr_float(attrs, "threshold"),
            category=category,
            largest_lesion_um=_attr_float(attrs, "largest_lesion_um"),
            method=method,
            features={str(k): _attr_float(features, k) for k in features},
        )


def _attr_float(attrs: Mapping[str, object], key: str) -> float:
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StoreError(f"diagnosis field {key!r} = {value!r} is not a finite number")
    return float(value)


def diagnose(features: SlideFeatures, scorer: Scorer) -> Diagnosis:
    """Apply a scorer to one slide's features."""
    probability = scorer.probability(features.values)
    positive = probability >= scorer.threshold
    largest = features.largest_lesion_um
    category: SizeCategory = "negative"
    if positive:
        category = size_category(largest) if largest > 0 else "itc"
    return Diagnosis(
        probability=probability,
        call="positive" if positive else "negative",
        threshold=scorer.threshold,
        category=category,
        largest_lesion_um=largest,
        method=scorer.name,
        features=dict(features.values),
    )


def diagnose_heatmap(prob: np.ndarray, tissue: np.ndarray, grid: CellGrid, scorer: Scorer) -> Diagnosis:
    """Features with the scorer's own settings, then the diagnosis."""
    return diagnose(compute_features(prob, tissue, grid, scorer.feature_settings), scorer)


def with_qc_verdict(diagnosis: Diagnosis, qc_verdict: str | None) -> Diagnosis:
    """The diagnosis as QC allows it: a negative call on a slide QC found not assessable becomes
    "not assessable"; a positive call, or any call on an assessable slide, is unchanged."""
    if qc_verdict == NOT_ASSESSABLE and diagnosis.call == "negative":
        return dataclasses.replace(diagnosis, call=NOT_ASSESSABLE)
    return diagnosis


def diagnose_stored_slide(store: HeatmapStore, slide_id: str, scorer: Scorer, save: bool = True) -> Diagnosis:
    """Diagnose a complete slide from its heatmap (QC's excluded cells left out) and its QC
    verdict, and (with `save`) store the diagnosis in its attributes."""
    heatmap = read_heatmap(store, slide_id)
    diagnosis = diagnose_heatmap(heatmap.prob, heatmap.tissue, heatmap.grid, scorer)
    diagnosis = with_qc_verdict(diagnosis, store.stored_slide(slide_id).qc_verdict)
    if save:
        store.set_diagnosis(slide_id, diagnosis.to_attrs())
    return diagnosis


def stored_diagnosis(store: HeatmapReader, slide_id: str) -> Diagnosis | None:
    """The diagnosis stored with the slide, or None when it has none yet."""
    attrs = store.stored_slide(slide_id).diagnosis
    if attrs is None:
        return None
    try:
        return Diagnosis.from_attrs(attrs)
    except StoreError as err:
        raise StoreError(f"slide {slide_id!r}: stored diagnosis is malformed: {err}") from None
