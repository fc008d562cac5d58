"""The transparent default rule, and the pN size categories.

Default rule: the slide's probability of metastasis is one feature of its heatmap (the top-k
mean by default: the mean of the k most tumour-like cells, steadier than the single maximum),
and the call is positive when that probability is at or above the stated threshold.

Size categories follow the pN definitions (AJCC/UICC) applied to the longest diameter of the
largest lesion (see `pcam_scan.lesions` for how the diameter is measured):
- macro: > 2 mm (2000 um);
- micro: > 0.2 mm (200 um) and <= 2 mm;
- itc (isolated tumour cells): > 0 and <= 0.2 mm;
- negative: no lesion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pcam_scan.defaults import DECISION_THRESHOLD
from pcam_scan.diagnosis.features import MAX_PROB, TOP_K_MEAN, FeatureSettings
from pcam_scan.errors import ConfigError
from pcam_scan.validation import check_probability

SizeCategory = Literal["macro", "micro", "itc", "negative"]
SIZE_CATEGORIES: tuple[SizeCategory, ...] = ("macro", "micro", "itc", "negative")

MACRO_ABOVE_UM = 2000.0
MICRO_ABOVE_UM = 200.0

DEFAULT_RULE_NAME = "default-rule"


def size_category(largest_lesion_um: float) -> SizeCategory:
    """pN size category of a slide from its largest lesion's longest diameter (0 = no lesion)."""
    if not (math.isfinite(largest_lesion_um) and largest_lesion_um >= 0):
        raise ConfigError(f"lesion diameter {largest_lesion_um} um must be finite and >= 0")
    if largest_lesion_um > MACRO_ABOVE_UM:
        return "macro"
    if largest_lesion_um > MICRO_ABOVE_UM:
        return "micro"
    if largest_lesion_um > 0:
        return "itc"
    return "negative"


@dataclass(frozen=True)
class DefaultRule:
    """probability = the `score` feature; positive when probability >= `threshold`."""

    score: Literal["top_k_mean", "max_prob"] = "top_k_mean"
    threshold: float = DECISION_THRESHOLD
    feature_settings: FeatureSettings = FeatureSettings()

    def __post_init__(self) -> None:
        if self.score not in (TOP_K_MEAN, MAX_PROB):
            raise ConfigError(f"default rule score {self.score!r} is not top_k_mean or max_prob")
        check_probability("decision threshold", self.threshold)

    @property
    def name(self) -> str:
        return f"{DEFAULT_RULE_NAME}:{self.score}"

    def probability(self, values: Mapping[str, float]) -> float:
        if self.score not in values:
            raise ConfigError(f"features lack {self.score}")
        return float(values[self.score])
