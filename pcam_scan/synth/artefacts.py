"""Slide artefacts with known masks, the ground truth of QC: marker strokes of several colours,
out-of-focus discs (Gaussian blur, sigma in um), tissue folds and air bubbles.

Each artefact is a shape in level-0 pixels with one `covers(l0_x, l0_y)` test, used both to paint
it onto the rendered pixels (pixel centres) and to write its true mask on the heatmap's cell grid
(a cell is covered when at least half of its samples are), so the two cannot disagree.

- ink: a polyline stroke `ink_width_um` wide; the marker's colour multiplies the pixels under it
  (Beer-Lambert: its density adds to the tissue's), drawn last (ink is on top);
- blur: a disc whose pixels are replaced by a Gaussian blur of `blur_sigma_um` (rendered with a
  margin, so the blur sees the tissue around it);
- fold: a band of tissue whose optical density is doubled (two layers);
- bubble: a disc whose tissue density is halved (air, a thinner mount), ringed by a dark grey rim
  `BUBBLE_RIM_UM` wide (the meniscus). Its truth on the cell grid is the rim (what QC measures).
  A bubble over a fold halves what the fold doubled: the pixels there show unfolded tissue, so
  the fold's truth stops at the bubble.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from pcam_scan.defaults import SYNTH_BLUR_RADIUS_UM, SYNTH_BLUR_SIGMA_UM, SYNTH_INK_WIDTH_UM
from pcam_scan.errors import ConfigError

INK_RGB: dict[str, tuple[int, int, int]] = {
    "blue": (30, 70, 160),
    "green": (20, 120, 70),
    "black": (40, 40, 45),
    "red": (190, 30, 45),
}
BUBBLE_RIM_UM = 4.0
BUBBLE_RIM_RGB = (105, 105, 110)
FOLD_WIDTH_UM = 250.0
KINDS = ("ink", "blur", "fold", "bubble")
TRUTH_MIN_SHARE = {"ink": 0.5, "blur": 0.5, "fold": 0.5, "bubble": 0.04}
"""A cell is in an artefact's true mask when this share of it is covered: half, except for a
bubble's rim, a line a few um wide that crosses a cell (QC flags the rim it can see)."""


@dataclass(frozen=True)
class ArtefactSpec:
    """How many artefacts of each kind per slide, and their sizes (um)."""

    ink_strokes: int = 0
    ink_colours: tuple[str, ...] = tuple(INK_RGB)
    ink_width_um: float = SYNTH_INK_WIDTH_UM
    blur_discs: int = 0
    blur_radius_um: float = SYNTH_BLUR_RADIUS_UM
    blur_sigma_um: float = SYNTH_BLUR_SIGMA_UM
    folds: int = 0
    bubbles: int = 0
    bubble_radius_um: float = 300.0

    def __post_init__(self) -> None:
        for name in ("ink_strokes", "blur_discs", "folds", "bubbles"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 50:
                raise ConfigError(f"--{name.replace('_', '-')} must be a count in 0..50, got {value!r}")
        unknown = [colour for colour in self.ink_colours if colour not in INK_RGB]
        if unknown or not self.ink_colours:
            raise ConfigError(f"--ink-colours must be some of {', '.join(INK_RGB)}, got {','.join(self.ink_colours)}")
        for name, low, high in (
            ("ink_width_um", 5.0, 2000.0),
            ("blur_radius_um", 50.0, 5000.0),
            ("blur_sigma_um", 0.2, 20.0),
            ("bubble_radius_um", 50.0, 3000.0),
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"--{name.replace('_', '-')} must lie in {low:g}..{high:g}, got {value!r}")

    @property
    def any(self) -> bool:
        return bool(self.ink_strokes or self.blur_discs or self.folds or self.bubbles)


Covers = Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], npt.NDArray[np.bool_]]


@dataclass(frozen=True)
class Stroke:
    l0_xy: npt.NDArray[np.float64] = field(repr=False)
    half_width_px: float
    colour: str

    def covers(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        for (x0, y0), (x1, y1) in zip(self.l0_xy[:-1], self.l0_xy[1:]):
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
            inside |= (x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2 <= self.half_width_px**2
        return inside

    def box(self) -> tuple[float, float, float, float]:
        lo, hi = self.l0_xy.min(axis=0) - self.half_width_px, self.l0_xy.max(axis=0) + self.half_width_px
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


@dataclass(frozen=True)
class Disc:
    l0_centre_xy: tuple[float, float]
    radius_px: float

    def covers(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        cx, cy = self.l0_centre_xy
        inside: npt.NDArray[np.bool_] = (x - cx) ** 2 + (y - cy) ** 2 <= self.radius_px**2
        return inside

    def box(self) -> tuple[float, float, float, float]:
        cx, cy = self.l0_centre_xy
        r = self.radius_px
        return cx - r, cy - r, cx + r, cy + r


@dataclass(frozen=True)
class Ring:
    """The rim of a bubble: between `inner_px` and the disc's radius."""

    disc: Disc
    inner_px: float

    def covers(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        cx, cy = self.disc.l0_centre_xy
        d2 = (x - cx) ** 2 + (y - cy) ** 2
        inside: npt.NDArray[np.bool_] = (d2 <= self.disc.radius_px**2) & (d2 > self.inner_px**2)
        return inside

    def box(self) -> tuple[float, float, float, float]:
        return self.disc.box()


@dataclass(frozen=True)
class SlideArtefacts:
    """The artefacts placed on one slide (level-0 px), and the blur's sigma in level-0 px."""

    strokes: tuple[Stroke, ...] = ()
    blur: tuple[Disc, ...] = ()
    folds: tuple[Stroke, ...] = ()
    bubbles: tuple[Disc, ...] = ()
    blur_sigma_px: float = 0.0
    rim_px: float = 0.0

    @property
    def empty(self) -> bool:
        return not (self.strokes or self.blur or self.folds or self.bubbles)

    def rims(self) -> tuple[Ring, ...]:
        return tuple(Ring(bubble, bubble.radius_px - self.rim_px) for bubble in self.bubbles)

    def shapes(self, kind: str) -> tuple[Stroke | Disc | Ring, ...]:
        """The shapes whose union is the true mask of `kind` (one of `KINDS`)."""
        by_kind: dict[str, tuple[Stroke | Disc | Ring, ...]] = {
            "ink": self.strokes,
            "blur": self.blur,
            "fold": self.folds,
            "bubble": self.rims(),
        }
        return by_kind[kind]

    def margin_px(self) -> int:
        return int(math.ceil(4.0 * self.blur_sigma_px)) if self.blur else 0

    def paint(self, rgb: npt.NDArray[np.uint8], l0_x: int, l0_y: int, render: RenderFn) -> npt.NDArray[np.uint8]:
        """`rgb` (the region at (l0_x, l0_y)) with the artefacts drawn; `render` gives more pixels
        around the region for the blur. Each shape is evaluated only over its own box."""
        out = rgb.astype(np.float32)
        _paint_folds(out, self.folds, l0_x, l0_y)
        m = self.margin_px()
        blur = _touching(self.blur, _box_of(out, l0_x, l0_y), m)
        if blur:
            height, width = out.shape[:2]
            grown = render(l0_x - m, l0_y - m, width + 2 * m, height + 2 * m).astype(np.float32)
            _paint_folds(grown, self.folds, l0_x - m, l0_y - m)
            sigma = self.blur_sigma_px
            blurred = ndimage.gaussian_filter(grown, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)
            blurred = blurred[m : m + height, m : m + width]
            for disc in blur:
                for window, mask in _windows(disc, out, l0_x, l0_y):
                    out[window][mask] = blurred[window][mask]
        for bubble, rim in zip(self.bubbles, self.rims()):
            for window, mask in _windows(bubble, out, l0_x, l0_y):
                out[window][mask] = 255.0 * (out[window][mask] / 255.0) ** 0.5
            for window, mask in _windows(rim, out, l0_x, l0_y):
                out[window][mask] = BUBBLE_RIM_RGB
        for stroke in self.strokes:
            ink = np.array(INK_RGB[stroke.colour], np.float32) / 255.0
            for window, mask in _windows(stroke, out, l0_x, l0_y):
                out[window][mask] *= ink
        painted: npt.NDArray[np.uint8] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return painted

    def cell_masks(
        self, rows: int, cols: int, l0_per_cell: float, samples: int = 16
    ) -> dict[str, npt.NDArray[np.bool_]]:
        """The true mask of each kind on a cell grid (`l0_per_cell` level-0 px per cell side):
        a cell is covered when `TRUTH_MIN_SHARE` of its `samples` x `samples` points are."""
        offsets = (np.arange(samples) + 0.5) / samples
        ys = ((np.arange(rows)[:, None] + offsets[None, :]) * l0_per_cell).reshape(-1)
        xs = ((np.arange(cols)[:, None] + offsets[None, :]) * l0_per_cell).reshape(-1)
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
        masks = {}
        for kind in KINDS:
            covered = np.zeros(grid_x.shape, dtype=bool)
            for shape in self.shapes(kind):
                covered |= shape.covers(grid_x, grid_y)
            if kind == "fold":  # a bubble drawn over a fold undoes it (module doc)
                for bubble in self.bubbles:
                    covered &= ~bubble.covers(grid_x, grid_y)
            share = covered.reshape(rows, samples, cols, samples).mean(axis=(1, 3))
            masks[kind] = share >= TRUTH_MIN_SHARE[kind]
        return masks


RenderFn = Callable[[int, int, int, int], npt.NDArray[np.uint8]]


def _box_of(image: npt.NDArray[np.float32], l0_x: int, l0_y: int) -> tuple[int, int, int, int]:
    return l0_x, l0_y, l0_x + image.shape[1], l0_y + image.shape[0]


def _touching(shapes: tuple[Disc, ...], box: tuple[int, int, int, int], margin: int = 0) -> list[Disc]:
    x0, y0, x1, y1 = box
    found: list[Disc] = []
    for shape in shapes:
        sx0, sy0, sx1, sy1 = shape.box()
        if sx1 >= x0 - margin and sx0 <= x1 + margin and sy1 >= y0 - margin and sy0 <= y1 + margin:
            found.append(shape)
    return found


def _windows(
    shape: Stroke | Disc | Ring, image: npt.NDArray[np.float32], l0_x: int, l0_y: int
) -> list[tuple[tuple[slice, slice], npt.NDArray[np.bool_]]]:
    """The part of `image` (at l0_x, l0_y) inside the shape's box, and the shape's mask there."""
    sx0, sy0, sx1, sy1 = shape.box()
    height, width = image.shape[:2]
    c0, c1 = max(int(math.floor(sx0)) - l0_x, 0), min(int(math.ceil(sx1)) - l0_x + 1, width)
    r0, r1 = max(int(math.floor(sy0)) - l0_y, 0), min(int(math.ceil(sy1)) - l0_y + 1, height)
    if c0 >= c1 or r0 >= r1:
        return []
    ys, xs = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    mask = shape.covers(xs + l0_x + 0.5, ys + l0_y + 0.5)
    return [((slice(r0, r1), slice(c0, c1)), mask)] if mask.any() else []


def _paint_folds(image: npt.NDArray[np.float32], folds: tuple[Stroke, ...], l0_x: int, l0_y: int) -> None:
    """Double the optical density under each fold, in place."""
    for fold in folds:
        for window, mask in _windows(fold, image, l0_x, l0_y):
            image[window][mask] = 255.0 * (image[window][mask] / 255.0) ** 2


def place_artefacts(
    spec: ArtefactSpec,
    mpp_um_px: float,
    inside_tissue: Callable[[float, float], bool],
    box: tuple[float, float, float, float],
    seed: int,
) -> SlideArtefacts:
    """Artefacts at seeded places whose centre lies on tissue (`inside_tissue`) within `box`
    (level-0 x0, y0, x1, y1)."""
    if not spec.any:
        return SlideArtefacts()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20]))
    x0, y0, x1, y1 = box

    def on_tissue() -> tuple[float, float]:
        for _ in range(500):
            x, y = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
            if inside_tissue(x, y):
                return x, y
        return (x0 + x1) / 2, (y0 + y1) / 2

    def band(length_um: float, half_width_um: float, colour: str) -> Stroke:
        cx, cy = on_tissue()
        angle = float(rng.uniform(0, math.pi))
        half = length_um / 2 / mpp_um_px
        bend = float(rng.uniform(-0.3, 0.3))
        points = np.array(
            [
                (cx - half * math.cos(angle), cy - half * math.sin(angle)),
                (cx + half * 0.1 * math.sin(angle) * bend, cy - half * 0.1 * math.cos(angle) * bend),
                (cx + half * math.cos(angle), cy + half * math.sin(angle)),
            ]
        )
        return Stroke(points, half_width_um / mpp_um_px, colour)

    colours = spec.ink_colours
    strokes = tuple(band(2000.0, spec.ink_width_um / 2, colours[i % len(colours)]) for i in range(spec.ink_strokes))
    blur = tuple(Disc(on_tissue(), spec.blur_radius_um / mpp_um_px) for _ in range(spec.blur_discs))
    folds = tuple(band(1200.0, FOLD_WIDTH_UM / 2, "fold") for _ in range(spec.folds))
    bubbles = tuple(Disc(on_tissue(), spec.bubble_radius_um / mpp_um_px) for _ in range(spec.bubbles))
    return SlideArtefacts(strokes, blur, folds, bubbles, spec.blur_sigma_um / mpp_um_px, BUBBLE_RIM_UM / mpp_um_px)
