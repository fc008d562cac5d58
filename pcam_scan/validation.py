"""Shared checks on settings values, so every place words the same rule the same way."""

from __future__ import annotations

import math
from numbers import Real

from pcam_scan.errors import ConfigError, PcamScanError


def check_probability(name: str, value: float, error: type[PcamScanError] = ConfigError) -> float:
    """`value` as a float when it is a finite number in [0, 1]; else raise `error`.

    Thresholds and probabilities are compared against heatmap cells in [0, 1], so NaN, infinities
    and out-of-range values would silently select everything or nothing.
    """
    if not isinstance(value, Real):
        raise error(f"{name} {value!r} must be a number in [0, 1]")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise error(f"{name} {value} must lie in [0, 1]")
    return float(value)


MAX_SEED = 2**32 - 1


def check_seed(name: str, value: int, error: type[PcamScanError] = ConfigError) -> int:
    """A seed numpy and torch both take: an integer in [0, 2**32 - 1] (numpy refuses negatives,
    torch overflows beyond 64 bits), refused here in one line instead of deep inside a run."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise error(f"{name} {value!r} must be an integer in 0..{MAX_SEED}")
    return value


MPP_PLAUSIBLE_UM_PX = (0.05, 20.0)
"""Microns per pixel of a slide scan, a read plane or a model: from beyond a 100x oil objective
(about 0.1) to a low-power overview. Outside it, a file is mislabelled (a photo's 72 dpi is
353 um/px) or a number was mistyped; one range for slides, models, overrides and stores."""


def is_plausible_mpp(value: float) -> bool:
    """Whether `value` is a finite MPP inside `MPP_PLAUSIBLE_UM_PX`."""
    low, high = MPP_PLAUSIBLE_UM_PX
    return isinstance(value, Real) and math.isfinite(value) and low <= value <= high


def check_mpp(name: str, value: float, error: type[PcamScanError] = ConfigError) -> float:
    """`value` as a float when it is a plausible MPP; else raise `error` naming `name`."""
    if not is_plausible_mpp(value):
        low, high = MPP_PLAUSIBLE_UM_PX
        raise error(f"{name} {value!r} um/px is not plausible (expected {low}-{high} um/px)")
    return float(value)
