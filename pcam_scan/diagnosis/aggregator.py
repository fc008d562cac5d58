"""The learned aggregator: logistic regression on standardised slide features, stored as JSON.

A fitted aggregator is a handful of numbers, so it is saved as a documented, versioned JSON file
and applied with numpy; loading never unpickles anything and never imports scikit-learn.

File format `pcam-scan-aggregator`, version 1 (one JSON object):

    format            "pcam-scan-aggregator"
    version           1
    model             "logistic-regression"
    feature_settings  {"top_k": int, "area_thresholds": [float], "lesion_threshold": float}
    feature_names     [str]  (must equal the names those settings produce, in that order)
    scaler            {"mean": [float], "scale": [float]}  (one per feature, scale > 0)
    coefficients      [float]  (one per feature, on the standardised features)
    intercept         float
    threshold         float in [0, 1]  (positive when probability >= threshold)
    training          {..}  free-form metadata: slide counts, CV AUC, folds, C, seed, versions

probability = 1 / (1 + exp(-(intercept + sum(coef * (x - mean) / scale))))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcam_scan.bounded_json import DEFAULT_LIMITS, JsonLimitError, parse_json
from pcam_scan.defaults import DECISION_THRESHOLD
from pcam_scan.diagnosis.features import FeatureSettings
from pcam_scan.errors import ConfigError, PcamScanError
from pcam_scan.outputs import write_output_text
from pcam_scan.regular_files import IrregularFileError, read_regular_file
from pcam_scan.validation import check_probability
from pcam_scan.wording import count_noun

AGGREGATOR_FORMAT = "pcam-scan-aggregator"
AGGREGATOR_VERSION = 1
AGGREGATOR_MODEL = "logistic-regression"


class AggregatorError(PcamScanError):
    """An aggregator file is missing, malformed, of another format or version, or inconsistent."""


@dataclass(frozen=True)
class Aggregator:
    """A fitted logistic regression over standardised features (see the module docstring)."""

    feature_settings: FeatureSettings
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    threshold: float = DECISION_THRESHOLD
    training: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = self.feature_settings.names()
        if self.feature_names != expected:
            raise AggregatorError(
                f"feature names {list(self.feature_names)} do not match the feature settings {list(expected)}"
            )
        n = len(self.feature_names)
        columns = (("mean", self.mean), ("scale", self.scale), ("coefficients", self.coefficients))
        for name, values in columns:
            if len(values) != n:
                raise AggregatorError(f"{name} has {count_noun(len(values), 'value')} for {n} features")
            if not all(math.isfinite(v) for v in values):
                raise AggregatorError(f"{name} holds a non-finite value")
        if not all(v > 0 for v in self.scale):
            raise AggregatorError("every scaler scale must be > 0")
        if not math.isfinite(self.intercept):
            raise AggregatorError("intercept is not finite")
        check_probability("threshold", self.threshold, AggregatorError)

    @property
    def name(self) -> str:
        return f"aggregator:{AGGREGATOR_MODEL}:v{AGGREGATOR_VERSION}"

    def probability(self, values: Mapping[str, float]) -> float:
        """Probability of metastasis for one slide's feature values."""
        missing = [n for n in self.feature_names if n not in values]
        if missing:
            raise ConfigError(f"features lack {', '.join(missing)}")
        x = np.array([values[n] for n in self.feature_names], dtype=np.float64)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = float(self.intercept + np.dot(np.asarray(self.coefficients), z))
        return _sigmoid(logit)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "format": AGGREGATOR_FORMAT,
            "version": AGGREGATOR_VERSION,
            "model": AGGREGATOR_MODEL,
            "feature_settings": self.feature_settings.to_dict(),
            "feature_names": list(self.feature_names),
            "scaler": {"mean": list(self.mean), "scale": list(self.scale)},
            "coefficients": list(self.coefficients),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "training": dict(self.training),
        }


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    e = math.exp(logit)
    return e / (1.0 + e)


def _floats(name: str, value: object) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise AggregatorError(f"{name} must be a list of numbers")
    return tuple(float(v) for v in value)


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AggregatorError(f"{name} must be a number")
    return float(value)


def _object(data: Mapping[str, object], key: str) -> dict[str, object]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise AggregatorError(f"aggregator field {key!r} must be a JSON object")
    return value


def aggregator_from_json_dict(data: object) -> Aggregator:
    """An `Aggregator` from the parsed JSON of the documented format; anything else is refused."""
    if not isinstance(data, dict):
        raise AggregatorError("an aggregator file must hold one JSON object")
    if data.get("format") != AGGREGATOR_FORMAT:
        raise AggregatorError(f"format {data.get('format')!r} is not {AGGREGATOR_FORMAT!r}")
    version = data.get("version")
    if version != AGGREGATOR_VERSION:
        raise AggregatorError(
            f"aggregator version {version!r} is not supported (this pcam-scan reads version {AGGREGATOR_VERSION})"
        )
    if data.get("model") != AGGREGATOR_MODEL:
        raise AggregatorError(f"model {data.get('model')!r} is not {AGGREGATOR_MODEL!r}")
    names = data.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise AggregatorError("feature_names must be a list of strings")
    try:
        settings = FeatureSettings.from_dict(_object(data, "feature_settings"))
    except ConfigError as err:
        raise AggregatorError(f"feature_settings: {err}") from None
    scaler = _object(data, "scaler")
    return Aggregator(
        feature_settings=settings,
        feature_names=tuple(names),
        mean=_floats("scaler.mean", scaler.get("mean")),
        scale=_floats("scaler.scale", scaler.get("scale")),
        coefficients=_floats("coefficients", data.get("coefficients")),
        intercept=_float("intercept", data.get("intercept")),
        threshold=_float("threshold", data.get("threshold")),
        training=_object(data, "training"),
    )


def save_aggregator(aggregator: Aggregator, path: str | Path, overwrite: bool = True) -> None:
    """Write the aggregator as indented JSON (written whole, then renamed into place; see
    pcam_scan.outputs for what is refused)."""
    text = json.dumps(aggregator.to_json_dict(), indent=2, allow_nan=False) + "\n"
    write_output_text(Path(path), text, overwrite)


def load_aggregator(path: str | Path) -> Aggregator:
    """Read an aggregator JSON file; every problem is one `AggregatorError` line."""
    source = Path(path)
    try:  # the size is checked before reading: a 300 MB file cost 681 MB before the limit refused it
        data_bytes = read_regular_file(source, DEFAULT_LIMITS.max_bytes)
    except FileNotFoundError:
        raise AggregatorError(f"{source}: no such aggregator file") from None
    except IrregularFileError as err:
        raise AggregatorError(f"cannot read the aggregator: {err}") from None
    except OSError as err:
        raise AggregatorError(f"{source}: cannot read the aggregator: {err.strerror or err}") from None
    try:
        data = parse_json(data_bytes)
    except JsonLimitError as err:
        raise AggregatorError(f"{source}: {err}") from None
    try:
        return aggregator_from_json_dict(data)
    except AggregatorError as err:
        raise AggregatorError(f"{source}: {err}") from None
