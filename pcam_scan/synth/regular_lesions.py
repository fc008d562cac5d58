"""Lesions of exactly known size: discs, squares and ellipses whose longest diameter is given.

The irregular lesions of `synth` are realistic but their size is only what their outline happens
to give; measuring lesion geometry needs shapes whose longest diameter and area are known in
closed form, placed at sizes that straddle the pN cut-offs (0.2 mm and 2 mm). All coordinates
are level-0 px (`l0_xy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pcam_scan.errors import ConfigError

LesionKind = Literal["disc", "square", "ellipse"]
LESION_KINDS: tuple[LesionKind, ...] = ("disc", "square", "ellipse")
ELLIPSE_ASPECT = 0.6
"""Minor over major axis of the benchmark ellipses."""


@dataclass(frozen=True)
class RegularLesion:
    """One lesion of known longest diameter (um) and area (mm2), with its level-0 outline."""

    kind: LesionKind
    diameter_um: float
    area_mm2: float
    l0_xy: np.ndarray


def regular_lesion(
    kind: LesionKind,
    diameter_um: float,
    l0_centre_xy: tuple[float, float],
    angle_rad: float,
    slide_mpp_um_px: float,
    n_vertices: int = 256,
) -> RegularLesion:
    """A disc, square (diameter = its diagonal) or ellipse (diameter = its major axis)."""
    if kind not in LESION_KINDS:
        raise ConfigError(f"lesion kind {kind!r} is not one of {', '.join(LESION_KINDS)}")
    if not (math.isfinite(diameter_um) and diameter_um > 0):
        raise ConfigError(f"lesion diameter {diameter_um} um must be positive")
    radius_px = diameter_um / 2 / slide_mpp_um_px
    if kind == "square":
        t = np.array([0.25, 0.75, 1.25, 1.75]) * math.pi  # corners on the circle of the diagonal
        local = np.stack([np.cos(t), np.sin(t)], axis=1) * radius_px
        area_mm2 = 2 * (diameter_um / 2000) ** 2
    else:
        aspect = ELLIPSE_ASPECT if kind == "ellipse" else 1.0
        t = np.linspace(0.0, 2 * math.pi, n_vertices, endpoint=False)
        local = np.stack([np.cos(t), aspect * np.sin(t)], axis=1) * radius_px
        area_mm2 = math.pi * aspect * (diameter_um / 2000) ** 2
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    rotated = local @ np.array([[c, s], [-s, c]])
    return RegularLesion(kind, float(diameter_um), area_mm2, rotated + np.asarray(l0_centre_xy))
