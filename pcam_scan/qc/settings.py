"""QC's thresholds: frozen, checked when made, defaults (with their reasons) in pcam_scan.defaults.

They change the QC arrays and the verdict, never `prob`, so they are recorded in the store's
slide attributes (schema `quality_control.settings`), not in the run's settings hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pcam_scan import defaults
from pcam_scan.errors import ConfigError


@dataclass(frozen=True)
class QcSettings:
    """The per-cell rules and the slide verdict's limits (shares of tissue in [0, 1])."""

    ink_min_fraction: float = defaults.QC_INK_MIN_FRACTION
    ink_nearby_fraction: float = defaults.QC_INK_NEARBY_FRACTION
    ink_reach_cells: int = defaults.QC_INK_REACH_CELLS
    fold_od_ratio: float = defaults.QC_FOLD_OD_RATIO
    fold_light_od_ratio: float = defaults.QC_FOLD_LIGHT_OD_RATIO
    bubble_min_fraction: float = defaults.QC_BUBBLE_MIN_FRACTION
    blur_ratio: float = defaults.QC_BLUR_RATIO
    focus_reference_percentile: float = defaults.QC_FOCUS_REFERENCE_PERCENTILE
    max_excluded_share: float = defaults.QC_MAX_EXCLUDED_SHARE
    max_blur_share: float = defaults.QC_MAX_BLUR_SHARE
    warn_share: float = defaults.QC_WARN_SHARE

    def __post_init__(self) -> None:
        for name in (
            "ink_min_fraction",
            "ink_nearby_fraction",
            "bubble_min_fraction",
            "blur_ratio",
            "max_excluded_share",
            "max_blur_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"QC {name} {getattr(self, name)} must lie in [0, 1]")
        if not 0.0 <= self.warn_share <= 1.0:
            raise ConfigError(f"QC warn_share {self.warn_share} must lie in [0, 1]")
        for name in ("fold_od_ratio", "fold_light_od_ratio"):
            if getattr(self, name) <= 1.0:
                raise ConfigError(f"QC {name} {getattr(self, name)} must be above 1")
        if not 0 <= self.ink_reach_cells <= 8 or self.ink_reach_cells != int(self.ink_reach_cells):
            raise ConfigError(f"QC ink_reach_cells {self.ink_reach_cells} must be a whole number of cells in 0..8")
        if not 50.0 <= self.focus_reference_percentile <= 100.0:
            raise ConfigError("QC focus_reference_percentile must lie in 50..100")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> QcSettings:
        """The settings a store recorded; a key it lacks (a store written before the key) keeps
        its default."""
        fields = cls.__dataclass_fields__
        values = {key: float(value) for key, value in raw.items() if key in fields}  # type: ignore[arg-type]
        if "ink_reach_cells" in values:
            values["ink_reach_cells"] = int(values["ink_reach_cells"])
        return cls(**values)  # type: ignore[arg-type]
