"""H&E-like pixels for any level-0 region of a planned slide.

Colour comes from stain amounts through Beer-Lambert optical density, as on a real slide: eosin
(pink stroma, cytoplasm), haematoxylin (purple nuclei), on white glass near (240, 240, 240).
Each pixel's region (glass, stroma, fat, tumour) is rasterised from the plan's polygons with the
same function and pixel-centre rule as the ground-truth mask, so the tumour texture stops
exactly at the annotation. Every input is addressed by level-0 position (seeded seed cells,
lattice noise), so `render_region` gives the same pixels however a slide is cut into blocks.
"""

from __future__ import annotations

import numpy as np

from pcam_scan.annotations.model import Polygon, SlideAnnotations
from pcam_scan.annotations.rasterize import rasterize_annotations
from pcam_scan.synth.layout import SlidePlan
from pcam_scan.synth.noise import NoiseTable, lattice_uniform, value_noise
from pcam_scan.synth.nuclei import (
    NORMAL_NUCLEI,
    TUMOUR_NUCLEI,
    Nuclei,
    draw_nuclei,
    max_radius_px,
    nuclei_in,
)
from pcam_scan.synth.stains import GLASS_OD, STAIN_PRESETS, TISSUE_OD, density_to_rgb

GLASS, STROMA, FAT, TUMOUR = 0, 1, 2, 3

# Stain between nuclei per region: (eosin, haematoxylin) for glass, stroma, fat, tumour.
BASE_EOSIN = np.array([0.0, 0.55, 0.04, 0.40], np.float32)
BASE_HAEMATOXYLIN = np.array([0.0, 0.04, 0.005, 0.20], np.float32)
FAT_CELL_UM = 70.0
FAT_MEMBRANE_UM = 2.0
NUCLEUS_EDGE_UM = 0.6


class SlideTexture:
    """Renders regions of one planned slide; holds only per-slide constants."""

    def __init__(self, plan: SlidePlan) -> None:
        self.plan = plan
        self.mpp = plan.spec.mpp_um_px
        self.margin_px = max_radius_px(self.mpp)
        self._tissue = _filled(plan.tissue, "tissue")
        self._fat = _filled(plan.fat, "fat")
        self._lesions = plan.annotations()
        self._lesion_boxes = [(p.l0_xy.min(axis=0), p.l0_xy.max(axis=0)) for p in self._lesions.tumour]
        self._grain = NoiseTable(plan.seed, 11)
        self._haem_od, self._eosin_od = STAIN_PRESETS[plan.spec.stain_preset].vectors()

    def labels(self, l0_x: int, l0_y: int, width: int, height: int) -> np.ndarray:
        """uint8 (H, W) region per pixel: GLASS, STROMA, FAT or TUMOUR (tumour minus exclusions)."""
        shape, origin = (height, width), (float(l0_x), float(l0_y))
        labels = rasterize_annotations(self._tissue, 1.0, shape, origin).astype(np.uint8)
        if not labels.any():
            return labels
        if self._fat.tumour:
            labels[rasterize_annotations(self._fat, 1.0, shape, origin) & (labels == STROMA)] = FAT
        if self._touches_lesion(l0_x, l0_y, width, height):
            labels[rasterize_annotations(self._lesions, 1.0, shape, origin)] = TUMOUR
        return labels

    def _touches_lesion(self, l0_x: int, l0_y: int, width: int, height: int) -> bool:
        return any(
            lo[0] < l0_x + width and hi[0] >= l0_x and lo[1] < l0_y + height and hi[1] >= l0_y
            for lo, hi in self._lesion_boxes
        )

    def render(self, l0_x: int, l0_y: int, width: int, height: int) -> np.ndarray:
        """uint8 (H, W, 3) RGB of the level-0 region [l0_x, l0_x + width) x [l0_y, l0_y + height)."""
        m = self.margin_px
        grown = self.labels(l0_x - m, l0_y - m, width + 2 * m, height + 2 * m)
        labels = grown[m : m + height, m : m + width]
        grain = self._grain.sample(l0_x, l0_y, width, height)
        if not grown.any():
            grey = density_to_rgb(np.float32(GLASS_OD) + 0.008 * grain)
            return np.repeat(grey[..., None], 3, axis=2)
        eosin = BASE_EOSIN[labels]
        haem = BASE_HAEMATOXYLIN[labels]
        seed = self.plan.seed
        broad = value_noise(seed, 1, l0_x, l0_y, width, height, 80.0 / self.mpp)
        fibres = value_noise(seed, 2, l0_x, l0_y, width, height, 6.0 / self.mpp)
        eosin *= 1.0 + 0.22 * broad + 0.25 * fibres * (labels != FAT)
        haem *= 1.0 + 0.3 * broad
        fat = labels == FAT
        if fat.any():
            eosin[fat] += 0.45 * self._fat_membranes(l0_x, l0_y, fat)
        coverage, nucleus_haem = self._nuclei(grown, l0_x, l0_y, width, height)
        chromatin = 0.85 + 0.12 * grain
        haem += nucleus_haem * coverage * chromatin
        eosin *= 1.0 - 0.6 * coverage
        density = haem[..., None] * self._haem_od + eosin[..., None] * self._eosin_od
        density += np.where(labels == GLASS, np.float32(GLASS_OD), np.float32(TISSUE_OD))[..., None]
        density += ((0.008 + 0.02 * (labels != GLASS)) * grain)[..., None]
        return density_to_rgb(density)

    def _nuclei(
        self, grown: np.ndarray, l0_x: int, l0_y: int, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Coverage and haematoxylin of the nuclei: normal ones in stroma, tumour ones in tumour."""
        m = self.margin_px
        gx, gy, gw, gh = l0_x - m, l0_y - m, width + 2 * m, height + 2 * m
        populations: list[tuple[Nuclei, int]] = []
        for kind, label in ((NORMAL_NUCLEI, STROMA), (TUMOUR_NUCLEI, TUMOUR)):
            if not (grown == label).any():
                continue
            nuclei = nuclei_in(self.plan.seed, kind, self.mpp, gx, gy, gw, gh)
            rows = np.floor(nuclei.l0_y - gy).astype(np.int64)
            cols = np.floor(nuclei.l0_x - gx).astype(np.int64)
            at = grown[rows, cols]
            populations.append((nuclei.take(at == label), label))
        if sum(len(n) for n, _ in populations) == 0:
            zeros = np.zeros((height, width), np.float32)
            return zeros, zeros
        nuclei = Nuclei.concat([n for n, _ in populations])
        label_of = np.concatenate([np.full(len(n), label, np.uint8) for n, label in populations])
        coverage, haem, index = draw_nuclei(
            nuclei, (l0_x, l0_y), (height, width), m, max(0.75, NUCLEUS_EDGE_UM / self.mpp)
        )
        labels = grown[m : m + height, m : m + width]
        own = (index >= 0) & (label_of[index] == labels)
        return coverage * own, haem * own

    def _fat_membranes(self, l0_x: int, l0_y: int, fat: np.ndarray) -> np.ndarray:
        """Adipocyte walls on the fat pixels: cell borders of a jittered-grid Voronoi (Worley)."""
        cell_px = FAT_CELL_UM / self.mpp
        rows, cols = np.nonzero(fat)
        x = l0_x + cols + 0.5
        y = l0_y + rows + 0.5
        gx = np.floor(x / cell_px).astype(np.int64)
        gy = np.floor(y / cell_px).astype(np.int64)
        lo_x, lo_y = gx.min() - 1, gy.min() - 1
        span_x = np.arange(lo_x, gx.max() + 2)
        span_y = np.arange(lo_y, gy.max() + 2)
        jitter_x = lattice_uniform(self.plan.seed, 21, span_x[None, :], span_y[:, None])
        jitter_y = lattice_uniform(self.plan.seed, 22, span_x[None, :], span_y[:, None])
        nearest = np.full(len(x), np.inf)
        second = np.full(len(x), np.inf)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                cx, cy = gx + dx, gy + dy
                fx = (cx + jitter_x[cy - lo_y, cx - lo_x]) * cell_px
                fy = (cy + jitter_y[cy - lo_y, cx - lo_x]) * cell_px
                d = np.hypot(x - fx, y - fy)
                second = np.minimum(second, np.maximum(nearest, d))
                nearest = np.minimum(nearest, d)
        wall_px = FAT_MEMBRANE_UM / self.mpp
        walls: np.ndarray = np.clip(1.0 - (second - nearest) / wall_px, 0.0, 1.0).astype(np.float32)
        return walls


def _filled(outlines: tuple[np.ndarray, ...], name: str) -> SlideAnnotations:
    """Outlines as the filled set of a `SlideAnnotations`, to rasterise with the mask's rule."""
    polygons = tuple(Polygon(f"{name} {i}", name, xy) for i, xy in enumerate(outlines))
    return SlideAnnotations(tumour=polygons)
