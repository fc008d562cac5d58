"""Nuclei: where they are (a Poisson population per fixed level-0 seed cell, so every region sees
the same nuclei) and how they are drawn (nearest-centre ellipses via one distance transform).

Sizes are in um and converted with the slide's MPP, so a nucleus is the same size in the tissue
whatever the scan resolution: at PCam's 0.972 um/px a lymphocyte nucleus is ~6 px across, a
tumour nucleus 10-15 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SEED_CELL_PX = 256
CELL_OFFSET = 1 << 16


@dataclass(frozen=True)
class NucleusKind:
    """A population of nuclei: density, size (radius um), elongation (axis ratio), stain."""

    stream: int
    density_per_mm2: float
    radius_um: tuple[float, float]
    elongation: tuple[float, float]
    haematoxylin: tuple[float, float]


# Small round lymphocyte-like nuclei in normal tissue; larger, darker, elongated and crowded
# nuclei in tumour (the texture a PCam model learns to call tumour).
NORMAL_NUCLEI = NucleusKind(1, 5200.0, (2.4, 3.4), (1.0, 1.25), (0.85, 1.1))
TUMOUR_NUCLEI = NucleusKind(2, 4600.0, (4.8, 7.6), (1.05, 1.9), (1.3, 1.8))


@dataclass(frozen=True)
class Nuclei:
    """Arrays of one population in a region: level-0 centre x, y and per-nucleus parameters."""

    l0_x: np.ndarray
    l0_y: np.ndarray
    radius_px: np.ndarray
    elongation: np.ndarray
    angle: np.ndarray
    haematoxylin: np.ndarray

    def __len__(self) -> int:
        return len(self.l0_x)

    def take(self, keep: np.ndarray) -> Nuclei:
        return Nuclei(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Nuclei]) -> Nuclei:
        fields = Nuclei.__dataclass_fields__
        return Nuclei(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def max_radius_px(mpp_um_px: float) -> int:
    """How far a region must look beyond its edges for nuclei that reach into it: the longest
    semi-axis in level-0 px, plus the one-pixel ring `draw_nuclei` works on, plus the distance
    transform's rounding of centres to whole pixels (< 1 px), with a pixel to spare."""
    longest_um = max(k.radius_um[1] * math.sqrt(k.elongation[1]) for k in (NORMAL_NUCLEI, TUMOUR_NUCLEI))
    return math.ceil(longest_um / mpp_um_px) + 3


def _seed_cell(seed: int, kind: NucleusKind, mpp_um_px: float, cell_r: int, cell_c: int) -> Nuclei:
    # Cells left of or above the slide (a region's margin) have negative indices: shift them.
    rng = np.random.default_rng([seed, kind.stream, cell_r + CELL_OFFSET, cell_c + CELL_OFFSET])
    area_mm2 = (SEED_CELL_PX * mpp_um_px / 1000.0) ** 2
    n = int(rng.poisson(kind.density_per_mm2 * area_mm2))
    return Nuclei(
        l0_x=(cell_c + rng.random(n)) * SEED_CELL_PX,
        l0_y=(cell_r + rng.random(n)) * SEED_CELL_PX,
        radius_px=rng.uniform(*kind.radius_um, n) / mpp_um_px,
        elongation=rng.uniform(*kind.elongation, n),
        angle=rng.uniform(0.0, np.pi, n),
        haematoxylin=rng.uniform(*kind.haematoxylin, n),
    )


def nuclei_in(seed: int, kind: NucleusKind, mpp_um_px: float, l0_x: int, l0_y: int, width: int, height: int) -> Nuclei:
    """All nuclei of `kind` whose centres fall in the region (from every seed cell it touches)."""
    c0, c1 = l0_x // SEED_CELL_PX, (l0_x + width - 1) // SEED_CELL_PX
    r0, r1 = l0_y // SEED_CELL_PX, (l0_y + height - 1) // SEED_CELL_PX
    parts = [_seed_cell(seed, kind, mpp_um_px, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    nuclei = Nuclei.concat(parts)
    inside = (
        (nuclei.l0_x >= l0_x) & (nuclei.l0_x < l0_x + width) & (nuclei.l0_y >= l0_y) & (nuclei.l0_y < l0_y + height)
    )
    # A canonical order (by position), so that which of two nuclei in one pixel wins does not
    # depend on the region they were gathered for.
    order = np.lexsort((nuclei.l0_x[inside], nuclei.l0_y[inside]))
    return nuclei.take(np.flatnonzero(inside)[order])


def draw_nuclei(
    nuclei: Nuclei,
    region_l0_xy: tuple[int, int],
    region_hw: tuple[int, int],
    margin_px: int,
    edge_px: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render nuclei whose centres lie in the region grown by `margin_px` (> `max_radius_px`).

    Each pixel belongs to its nearest centre (Euclidean distance transform over the grown region)
    and is inside when within that nucleus's ellipse; crowded nuclei so mould against each
    other, and a one-pixel gap is kept where two nuclei meet. Returns float32 (H, W) coverage in
    [0, 1] (soft edge `edge_px` wide), the haematoxylin of the covering nucleus, and its index
    into `nuclei` (-1 where none).
    """
    height, width = region_hw
    if len(nuclei) == 0:
        zeros = np.zeros(region_hw, np.float32)
        return zeros, zeros.copy(), np.full(region_hw, -1, np.int64)
    x0, y0 = region_l0_xy
    owner = np.full((height + 2 * margin_px, width + 2 * margin_px), -1, np.int64)
    rows = np.floor(nuclei.l0_y).astype(np.int64) - y0 + margin_px
    cols = np.floor(nuclei.l0_x).astype(np.int64) - x0 + margin_px
    owner[rows, cols] = np.arange(len(nuclei))
    distance, (near_i, near_j) = ndimage.distance_transform_edt(owner < 0, return_indices=True)
    # Work on the region plus the row above and the column left of it: the gap between two
    # nuclei is decided from those neighbours, also on the region's first row and column.
    work = (slice(margin_px - 1, margin_px + height), slice(margin_px - 1, margin_px + width))
    work_h, work_w = height + 1, width + 1
    stretch = np.sqrt(nuclei.elongation)
    reach = float((nuclei.radius_px * stretch).max()) + 1.0
    # Only pixels within the longest semi-axis of their nearest centre can be inside a nucleus.
    near = np.flatnonzero(distance[work] <= reach)
    nearest = owner[near_i[work].ravel()[near], near_j[work].ravel()[near]]
    # Offsets from level-0 pixel centres in float64, then float32: the same numbers for a pixel
    # whatever region it is rendered in.
    dx = ((x0 - 1 + near % work_w + 0.5) - nuclei.l0_x[nearest]).astype(np.float32)
    dy = ((y0 - 1 + near // work_w + 0.5) - nuclei.l0_y[nearest]).astype(np.float32)
    # rho = elliptical distance / radius, with the per-nucleus terms folded in before the gather.
    cos, sin = np.cos(nuclei.angle), np.sin(nuclei.angle)
    along = (stretch * nuclei.radius_px).astype(np.float32)
    across = (nuclei.radius_px / stretch).astype(np.float32)
    c_along, s_along = (cos / along).astype(np.float32), (sin / along).astype(np.float32)
    c_across, s_across = (cos / across).astype(np.float32), (sin / across).astype(np.float32)
    u = dx * c_along[nearest] + dy * s_along[nearest]
    v = dy * c_across[nearest] - dx * s_across[nearest]
    rho = np.sqrt(u * u + v * v)
    soft = (nuclei.radius_px / edge_px).astype(np.float32)
    coverage = np.zeros((work_h, work_w), np.float32)
    coverage.ravel()[near] = np.clip((1.0 - rho) * soft[nearest], 0.0, 1.0)
    index = np.full((work_h, work_w), -1, np.int64)
    index.ravel()[near] = nearest
    # A gap where two nuclei meet (not where a nucleus meets background: `near` depends on the
    # region's nuclei, and the rendering must not).
    seam = np.zeros(region_hw, bool)
    seam |= (index[1:, 1:] != index[1:, :-1]) & (index[1:, :-1] >= 0)
    seam |= (index[1:, 1:] != index[:-1, 1:]) & (index[:-1, 1:] >= 0)
    coverage, index = coverage[1:, 1:], index[1:, 1:]
    coverage[seam] = 0.0
    index[coverage == 0] = -1
    haem = nuclei.haematoxylin.astype(np.float32)[index] * (index >= 0)
    return coverage, haem, index
