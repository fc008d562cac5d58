"""Slide-level features of a heatmap: the numbers a diagnosis is made from.

Every feature is a plain float with a name that carries its unit, so the same dictionary feeds
the default rule, the learned aggregator, the diagnoses CSV and the store's attributes. The
names depend on the settings (area thresholds), and `FeatureSettings.names()` gives them in the
fixed order the aggregator's coefficients follow.

Only predicted cells (finite probabilities) count as evidence; a slide without any predicted
cell has probability features of 0 (no evidence of tumour), not NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pcam_scan.defaults import REGION_THRESHOLD
from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid
from pcam_scan.lesions import RegionSettings, check_heatmap, find_regions
from pcam_scan.validation import check_probability

MAX_PROB = "max_prob"
TOP_K_MEAN = "top_k_mean"
MEAN_PROB = "mean_prob"
LARGEST_LESION_DIAMETER_UM = "largest_lesion_diameter_um"
LARGEST_LESION_AREA_MM2 = "largest_lesion_area_mm2"
LESION_COUNT = "lesion_count"
TUMOUR_TISSUE_FRACTION = "tumour_tissue_fraction"
TISSUE_AREA_MM2 = "tissue_area_mm2"


def area_feature_name(threshold: float) -> str:
    """Name of the tumour-area feature at one threshold, e.g. tumour_area_mm2_ge_0.50."""
    return f"tumour_area_mm2_ge_{threshold:.2f}"


@dataclass(frozen=True)
class FeatureSettings:
    """How features are computed: top-k size, area thresholds, and the lesion threshold."""

    top_k: int = 10
    area_thresholds: tuple[float, ...] = (0.5, 0.9)
    lesion_threshold: float = REGION_THRESHOLD

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 100_000:
            raise ConfigError(f"top-k {self.top_k} must lie in [1, 100000]")
        if not self.area_thresholds:
            raise ConfigError("at least one tumour-area threshold is needed")
        for t in self.area_thresholds:
            check_probability("tumour-area threshold", t)
        names = [area_feature_name(t) for t in self.area_thresholds]
        if len(set(names)) != len(names):
            raise ConfigError(f"tumour-area thresholds {self.area_thresholds} repeat at 2 decimals")
        RegionSettings(self.lesion_threshold)  # validates the threshold

    def names(self) -> tuple[str, ...]:
        """Feature names in their fixed order."""
        return (
            MAX_PROB,
            TOP_K_MEAN,
            MEAN_PROB,
            *(area_feature_name(t) for t in self.area_thresholds),
            TUMOUR_TISSUE_FRACTION,
            LARGEST_LESION_DIAMETER_UM,
            LARGEST_LESION_AREA_MM2,
            LESION_COUNT,
            TISSUE_AREA_MM2,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "top_k": self.top_k,
            "area_thresholds": list(self.area_thresholds),
            "lesion_threshold": self.lesion_threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FeatureSettings:
        """Settings from `to_dict`'s form; a malformed value raises `ConfigError`."""
        top_k = data.get("top_k")
        if not isinstance(top_k, int) or isinstance(top_k, bool):
            raise ConfigError(f"feature setting top_k {top_k!r} is not an integer")
        thresholds = data.get("area_thresholds")
        if not isinstance(thresholds, list):
            raise ConfigError(f"feature setting area_thresholds {thresholds!r} is not a list")
        return cls(
            top_k=top_k,
            area_thresholds=tuple(_number("area_thresholds", t) for t in thresholds),
            lesion_threshold=_number("lesion_threshold", data.get("lesion_threshold")),
        )


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"feature setting {name} {value!r} is not a number")
    return float(value)


@dataclass(frozen=True)
class SlideFeatures:
    """The feature values of one slide and the settings that produced them."""

    settings: FeatureSettings
    values: Mapping[str, float] = field(default_factory=dict)

    @property
    def largest_lesion_um(self) -> float:
        return self.values[LARGEST_LESION_DIAMETER_UM]

    def vector(self, names: tuple[str, ...]) -> np.ndarray:
        """Values in the order of `names`; a missing name raises `ConfigError`."""
        missing = [n for n in names if n not in self.values]
        if missing:
            raise ConfigError(f"features lack {', '.join(missing)}")
        return np.array([self.values[n] for n in names], dtype=np.float64)


def compute_features(prob: np.ndarray, tissue: np.ndarray, grid: CellGrid, settings: FeatureSettings) -> SlideFeatures:
    """Features of one slide's heatmap (probabilities, NaN = not predicted) and tissue mask."""
    values = check_heatmap(prob, grid)
    tissue_mask = np.asarray(tissue)
    if tissue_mask.shape != values.shape:
        raise StoreError(f"tissue mask shape {tissue_mask.shape} differs from heatmap {values.shape}")
    predicted = values[np.isfinite(values)]
    cell_mm2 = grid.cell_area_mm2
    tissue_mm2 = float(np.count_nonzero(tissue_mask)) * cell_mm2
    out: dict[str, float] = {
        MAX_PROB: 0.0,
        TOP_K_MEAN: 0.0,
        MEAN_PROB: 0.0,
    }
    if predicted.size:
        k = min(settings.top_k, predicted.size)
        out[MAX_PROB] = float(predicted.max())
        out[TOP_K_MEAN] = float(np.partition(predicted, predicted.size - k)[-k:].mean())
        out[MEAN_PROB] = float(predicted.mean())
    for t in settings.area_thresholds:
        out[area_feature_name(t)] = float(np.count_nonzero(predicted >= t)) * cell_mm2
    lesion_mm2 = float(np.count_nonzero(predicted >= settings.lesion_threshold)) * cell_mm2
    out[TUMOUR_TISSUE_FRACTION] = lesion_mm2 / tissue_mm2 if tissue_mm2 > 0 else 0.0
    regions = find_regions(values, grid, RegionSettings(settings.lesion_threshold))
    out[LARGEST_LESION_DIAMETER_UM] = max((r.diameter_um for r in regions), default=0.0)
    out[LARGEST_LESION_AREA_MM2] = max((r.area_mm2 for r in regions), default=0.0)
    out[LESION_COUNT] = float(len(regions))
    out[TISSUE_AREA_MM2] = tissue_mm2
    return SlideFeatures(settings=settings, values={n: out[n] for n in settings.names()})
