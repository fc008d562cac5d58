"""Irregular closed outlines (tissue pieces, fat lobules, lesions) and the few measures the layout
needs: longest diameter and point-in-polygon. All coordinates are level-0 px (`l0_xy`)."""

from __future__ import annotations

import numpy as np


def irregular_blob(
    rng: np.random.Generator,
    l0_centre_xy: tuple[float, float],
    l0_radii_xy: tuple[float, float],
    roughness: float,
    n_vertices: int = 96,
    harmonics: int = 10,
) -> np.ndarray:
    """(n_vertices, 2) outline of an ellipse whose radius wanders by random harmonics.

    The radius factor is 1 + sum_k a_k cos(k t + phase_k) with sum |a_k| <= `roughness`, so the
    outline never leaves the ellipse scaled by 1 + roughness, which is how callers keep it inside
    a bounding box.
    """
    k = np.arange(2, harmonics + 2)
    weights = rng.uniform(0.3, 1.0, size=len(k)) / k
    amplitudes = roughness * weights / weights.sum()
    phases = rng.uniform(0.0, 2 * np.pi, size=len(k))
    t = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    factor = 1.0 + (amplitudes[:, None] * np.cos(k[:, None] * t[None, :] + phases[:, None])).sum(0)
    x = l0_centre_xy[0] + l0_radii_xy[0] * factor * np.cos(t)
    y = l0_centre_xy[1] + l0_radii_xy[1] * factor * np.sin(t)
    return np.stack([x, y], axis=1)


def longest_diameter(l0_xy: np.ndarray) -> float:
    """Largest distance between two vertices (the lesion size Camelyon uses), in level-0 px."""
    diff = l0_xy[:, None, :] - l0_xy[None, :, :]
    return float(np.sqrt((diff**2).sum(axis=2)).max())


def scale_about(l0_xy: np.ndarray, l0_centre_xy: tuple[float, float], factor: float) -> np.ndarray:
    centre = np.asarray(l0_centre_xy, dtype=np.float64)
    return centre + (l0_xy - centre) * factor


def points_in_polygon(l0_points_xy: np.ndarray, l0_polygon_xy: np.ndarray) -> np.ndarray:
    """Boolean per point: inside the polygon by the even-odd rule."""
    px = l0_points_xy[:, 0][:, None]
    py = l0_points_xy[:, 1][:, None]
    x0, y0 = l0_polygon_xy[:, 0][None, :], l0_polygon_xy[:, 1][None, :]
    x1, y1 = np.roll(l0_polygon_xy[:, 0], -1)[None, :], np.roll(l0_polygon_xy[:, 1], -1)[None, :]
    spans = (y0 <= py) != (y1 <= py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    crossings = spans & (px < x_cross)
    return np.asarray(crossings.sum(axis=1) % 2 == 1)


def polygon_inside(l0_inner_xy: np.ndarray, l0_outer_xy: np.ndarray) -> bool:
    """Whether every vertex of `inner` lies inside `outer` (enough for our smooth outlines)."""
    return bool(points_in_polygon(l0_inner_xy, l0_outer_xy).all())
