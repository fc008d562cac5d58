"""Where things are on a synthetic slide: tissue pieces, fat lobules and lesions as level-0
polygons, sized in um from the slide's MPP. Pure: no pixels, no I/O.

The same polygons drive the texture (`texture.py`) and the ground truth (ASAP XML, mask), so the
annotation lies exactly on the tumour texture.

Lesion categories follow Camelyon16 by longest diameter: macro > 2 mm, micro 0.2-2 mm, isolated
tumour cells (ITC) < 0.2 mm. Sizes are drawn well inside each range and shrunk to what fits in
the tissue; every tumour slide gets at least one micro or macro lesion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pcam_scan.annotations.model import Polygon, SlideAnnotations
from pcam_scan.errors import ConfigError
from pcam_scan.synth.shapes import irregular_blob, longest_diameter, polygon_inside, scale_about
from pcam_scan.synth.spec import SlideSpec

Category = Literal["macro", "micro", "itc"]
MACRO_MIN_UM = 2000.0
ITC_MAX_UM = 200.0
# Diameters drawn per category (um): inside the Camelyon16 ranges with a margin.
DIAMETER_RANGES_UM: dict[Category, tuple[float, float]] = {
    "macro": (2200.0, 6000.0),
    "micro": (300.0, 1800.0),
    "itc": (60.0, 180.0),
}
EXTRA_LESION_CATEGORIES: tuple[Category, ...] = ("macro", "micro", "itc")
EXTRA_LESION_WEIGHTS = (0.2, 0.4, 0.4)
LESION_GAP_UM = 150.0
PLACEMENT_TRIES = 80
SHRINK_FACTOR = 0.85
EXCLUSION_PROBABILITY = 0.5
TUMOUR_GROUP = "_0"
EXCLUSION_GROUP = "_2"
HISTOTYPES = ("IDC", "ILC")
HISTOTYPE_WEIGHTS = (0.8, 0.2)


def lesion_category(diameter_um: float) -> Category:
    """Camelyon16's category of a lesion by its longest diameter."""
    if diameter_um > MACRO_MIN_UM:
        return "macro"
    if diameter_um >= ITC_MAX_UM:
        return "micro"
    return "itc"


@dataclass(frozen=True)
class Lesion:
    """One tumour region: outline, its size class, and an optional normal island inside it."""

    l0_xy: np.ndarray = field(repr=False)
    l0_centre_xy: tuple[float, float]
    diameter_um: float
    category: Category
    exclusion_l0_xy: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SlidePlan:
    """Everything placed on one slide; `seed` also drives the texture."""

    spec: SlideSpec
    seed: int
    tissue: tuple[np.ndarray, ...] = field(repr=False)
    fat: tuple[np.ndarray, ...] = field(repr=False)
    lesions: tuple[Lesion, ...]
    histotype: str

    @property
    def is_tumour(self) -> bool:
        return bool(self.lesions)

    @property
    def category(self) -> str:
        """Camelyon16 reference.csv column: Macro, Micro or None (ITC alone is not metastasis)."""
        kinds = {lesion.category for lesion in self.lesions}
        return "Macro" if "macro" in kinds else "Micro" if "micro" in kinds else "None"

    def annotation_names(self) -> tuple[tuple[str, str | None], ...]:
        """Per lesion, the names of its tumour polygon and of its exclusion (None if none):
        `Annotation 0`, `Annotation 1`, ... in lesion order, as Camelyon16 files name them."""
        names: list[tuple[str, str | None]] = []
        count = 0
        for lesion in self.lesions:
            has_exclusion = lesion.exclusion_l0_xy is not None
            names.append((f"Annotation {count}", f"Annotation {count + 1}" if has_exclusion else None))
            count += 2 if has_exclusion else 1
        return tuple(names)

    def annotations(self) -> SlideAnnotations:
        """Camelyon16-style ground truth: `_0` tumour polygons, `_2` exclusions inside them."""
        tumour: list[Polygon] = []
        exclusions: list[Polygon] = []
        named = zip(self.lesions, self.annotation_names(), strict=True)
        for lesion, (tumour_name, exclusion_name) in named:
            tumour.append(Polygon(tumour_name, TUMOUR_GROUP, lesion.l0_xy))
            if exclusion_name is not None and lesion.exclusion_l0_xy is not None:
                exclusions.append(Polygon(exclusion_name, EXCLUSION_GROUP, lesion.exclusion_l0_xy))
        return SlideAnnotations(tumour=tuple(tumour), exclusions=tuple(exclusions))


def plan_slide(spec: SlideSpec, seed: int, tumour: bool, node: Category | None = None) -> SlidePlan:
    """Lay out one slide from its seed: same seed and spec, same plan. `node`: a patient's lymph
    node of that category, holding exactly one lesion of it (pcam_scan.synth.patients)."""
    rng = np.random.default_rng([int(seed), 0x706C616E])
    tissue = _tissue_pieces(rng, spec)
    fat = _fat_lobules(rng, tissue)
    lesions: tuple[Lesion, ...] = ()
    histotype = "None"
    if node is not None:
        lesions = (_node_lesion(rng, spec, tissue, node),)
        histotype = str(rng.choice(HISTOTYPES, p=HISTOTYPE_WEIGHTS))
    elif tumour:
        lesions = _lesions(rng, spec, tissue)
        histotype = str(rng.choice(HISTOTYPES, p=HISTOTYPE_WEIGHTS))
    return SlidePlan(spec=spec, seed=int(seed), tissue=tissue, fat=fat, lesions=lesions, histotype=histotype)


def _rounded(l0_xy: np.ndarray) -> np.ndarray:
    """Vertices to 0.01 px, so the XML's decimal text reads back as exactly these floats."""
    return np.round(l0_xy, 2)


def _tissue_pieces(rng: np.random.Generator, spec: SlideSpec) -> tuple[np.ndarray, ...]:
    """1-3 lymph-node sections side by side along the slide's long axis, each in its own cell."""
    long_px, short_px = max(spec.width_px, spec.height_px), min(spec.width_px, spec.height_px)
    n_max = int(np.clip(long_px // short_px, 1, 3))
    count = int(rng.integers(1, n_max + 1))
    cell_long = long_px / count
    pieces = []
    for i in range(count):
        centre_long = cell_long * (i + 0.5) + rng.uniform(-0.03, 0.03) * cell_long
        centre_short = short_px * (0.5 + rng.uniform(-0.03, 0.03))
        radius_long = 0.5 * cell_long * rng.uniform(0.72, 0.82)
        radius_short = 0.5 * short_px * rng.uniform(0.72, 0.82)
        if spec.width_px >= spec.height_px:
            centre, radii = (centre_long, centre_short), (radius_long, radius_short)
        else:
            centre, radii = (centre_short, centre_long), (radius_short, radius_long)
        # roughness 0.14: the outline stays within 0.82 * 1.14 + 0.06 < 1 of the half cell.
        pieces.append(_rounded(irregular_blob(rng, centre, radii, roughness=0.14, n_vertices=160)))
    return tuple(pieces)


def _fat_lobules(rng: np.random.Generator, tissue: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """A few pale fat lobules inside each piece (clipped to the tissue when drawn)."""
    lobules = []
    for piece in tissue:
        centre = piece.mean(axis=0)
        radii = (piece.max(axis=0) - piece.min(axis=0)) / 2
        for _ in range(int(rng.integers(1, 4))):
            angle = rng.uniform(0, 2 * np.pi)
            reach = rng.uniform(0.35, 0.8)
            at = (
                centre[0] + reach * radii[0] * np.cos(angle),
                centre[1] + reach * radii[1] * np.sin(angle),
            )
            size = float(min(radii)) * rng.uniform(0.08, 0.2)
            radii_xy = (size, size * rng.uniform(0.6, 1.0))
            lobules.append(_rounded(irregular_blob(rng, at, radii_xy, roughness=0.3)))
    return tuple(lobules)


def _lesions(rng: np.random.Generator, spec: SlideSpec, tissue: tuple[np.ndarray, ...]) -> tuple[Lesion, ...]:
    placed: list[Lesion] = []
    first = _place(rng, spec, tissue, placed, "macro") or _place(rng, spec, tissue, placed, "micro")
    if first is None:
        raise ConfigError(
            f"a {spec.width_px} x {spec.height_px} px slide at {spec.mpp_um_px} um/px has no room "
            "for a micro-metastasis (0.2 mm) in its tissue: make it larger"
        )
    placed.append(first)
    for _ in range(int(rng.integers(0, 4))):
        category = rng.choice(EXTRA_LESION_CATEGORIES, p=EXTRA_LESION_WEIGHTS)
        lesion = _place(rng, spec, tissue, placed, category)
        if lesion is not None:
            placed.append(lesion)
    return tuple(placed)


def _node_lesion(rng: np.random.Generator, spec: SlideSpec, tissue: tuple[np.ndarray, ...], node: Category) -> Lesion:
    """A node's one lesion, of exactly its category (its measured diameter checked)."""
    lesion = _place(rng, spec, tissue, [], node)
    if lesion is None or lesion.category != node:
        low_um = DIAMETER_RANGES_UM[node][0]
        raise ConfigError(
            f"a {spec.width_px} x {spec.height_px} px slide at {spec.mpp_um_px} um/px has no room for a "
            f"{node} lesion ({low_um / 1000:g} mm) in its tissue: make it larger "
            "(patients' macro nodes need about 16384 x 16384 px at 0.243 um/px)"
        )
    return lesion


def _place(
    rng: np.random.Generator,
    spec: SlideSpec,
    tissue: tuple[np.ndarray, ...],
    placed: list[Lesion],
    category: Category,
) -> Lesion | None:
    """A lesion of `category` inside one tissue piece, clear of the others; None if none fits.

    Draw a size in the category's range no larger than the widest piece, try positions, and
    shrink by `SHRINK_FACTOR` while the size stays in the category.
    """
    low_um, high_um = DIAMETER_RANGES_UM[category]
    widest_um = max(float((p.max(axis=0) - p.min(axis=0)).min()) for p in tissue) * spec.mpp_um_px
    high_um = min(high_um, 0.8 * widest_um)
    if high_um < low_um:
        return None
    diameter_um = rng.uniform(low_um, high_um)
    areas = np.array([float(np.prod(p.max(axis=0) - p.min(axis=0))) for p in tissue])
    gap_px = LESION_GAP_UM / spec.mpp_um_px
    while diameter_um >= low_um:
        outline = _lesion_outline(rng, diameter_um / spec.mpp_um_px)
        for _ in range(PLACEMENT_TRIES):
            piece = tissue[int(rng.choice(len(tissue), p=areas / areas.sum()))]
            lo, hi = piece.min(axis=0), piece.max(axis=0)
            centre = (float(rng.uniform(lo[0], hi[0])), float(rng.uniform(lo[1], hi[1])))
            l0_xy = _rounded(outline + np.asarray(centre))
            if not polygon_inside(l0_xy, piece) or _too_close(centre, diameter_um, placed, spec, gap_px):
                continue
            l0_centre = (round(centre[0], 2), round(centre[1], 2))
            measured_um = longest_diameter(l0_xy) * spec.mpp_um_px
            exclusion = None
            if category == "macro":
                exclusion = _exclusion(rng, l0_xy, l0_centre, measured_um / spec.mpp_um_px)
            return Lesion(l0_xy, l0_centre, measured_um, lesion_category(measured_um), exclusion)
        diameter_um *= SHRINK_FACTOR
    return None


def _lesion_outline(rng: np.random.Generator, diameter_px: float) -> np.ndarray:
    """An irregular, rotated outline centred on (0, 0) whose longest diameter is `diameter_px`."""
    radii = (1.0, rng.uniform(0.55, 0.9))
    shape = irregular_blob(rng, (0.0, 0.0), radii, roughness=0.3, n_vertices=72, harmonics=8)
    angle = rng.uniform(0, np.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shape = shape @ rotation.T
    outline: np.ndarray = shape * (diameter_px / longest_diameter(shape))
    return outline


def _too_close(
    centre: tuple[float, float], diameter_um: float, placed: list[Lesion], spec: SlideSpec, gap_px: float
) -> bool:
    for other in placed:
        reach_px = 0.6 * (diameter_um + other.diameter_um) / spec.mpp_um_px + gap_px
        if math.dist(centre, other.l0_centre_xy) < reach_px:
            return True
    return False


def _exclusion(
    rng: np.random.Generator,
    lesion_l0_xy: np.ndarray,
    l0_centre: tuple[float, float],
    diameter_px: float,
) -> np.ndarray | None:
    """Sometimes a normal island (Camelyon16 `_2`) around the lesion's centre, well inside it."""
    if rng.uniform() >= EXCLUSION_PROBABILITY:
        return None
    radius = 0.1 * diameter_px
    radii = (radius, radius * rng.uniform(0.6, 1.0))
    island = _rounded(irregular_blob(rng, l0_centre, radii, roughness=0.25, n_vertices=48))
    inner_check = scale_about(island, l0_centre, 1.5)
    return island if polygon_inside(inner_check, lesion_l0_xy) else None
