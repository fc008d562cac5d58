"""Per-cell QC measures from a block's region: the pixels the scan reads for its patches anyway.

The region of a block is its cells plus a halo at the read plane (`Block.region_px_box`); a
cell's own pixels are the `cell_px` x `cell_px` square at the centre of its patch. Every measure
is taken over those pixels, so a cell is judged by what its label covers (the caller,
`pcam_scan.qc.block`, passes the bounding box of the block's tissue cells):
- `ink`: share of pixels of marker colour (HSV rules below);
- `eosin` and `eosin_light`: the median and the lower quartile of the eosin density of the cell's
  pixels (each pixel's Beer-Lambert optical density unmixed with Ruifrok and Johnston's
  haematoxylin, eosin and DAB vectors), for folds: a fold doubles the density of every pixel, so
  it doubles both, over tumour as well, while unfolded tumour, denser in haematoxylin, hardly
  raises either, and dense collagen or muscle, pink but with light gaps between its fibres, raises
  the median far more than the lower quartile (on the skin of CMU-1, a real slide of tests/data,
  the median alone flagged 20% of the tissue as folds). Per pixel, not the eosin of the cell's
  mean colour (the rule this replaced): unmixing a mix of colours is not the mix of their
  unmixings, so a mean's eosin moved with the nuclei, most on tumour;
- `rim`: share of pixels on a dark grey rim (unstained, so not tissue: an air bubble's meniscus);
- `focus`: mean squared Laplacian of the grey image (R + G; every pixel of every fourth row, each
  with its full-resolution neighbours) over its variance (+ a floor for glass), a contrast-free
  sharpness: blur removes the fine detail faster than the coarse contrast;
- `ink_patch`: the ink share of the most inked cell within the cell's patch (cell and halo): ink
  beside a cell is in what the model sees, and turns its probability as surely as ink on it.

Marker colours in HSV (hue in degrees), chosen against H&E: haematoxylin is purple (hue 260-300)
and eosin pink (300-350), both never green, never cyan-blue, never grey-black, and never the
saturated scarlet of a red marker:
- blue and green marker: hue 90-250, saturation >= 0.25 (over tissue too: the product of the two
  colours keeps the marker's hue);
- red marker: hue >= 345 or <= 15, saturation >= 0.8: a red marker over tissue keeps its own
  saturation (0.84 on glass, more over stain), while red blood cells stay below it (measured on
  the real slides of tests/data: CMU-1's at about 0.6, the TCGA section's packed, dark ones at
  0.75, the bound the rule had, so a congested vessel read as ink);
- black marker: value <= 0.25 with saturation <= 0.6 (dark nuclei are saturated purple).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FloatCells = npt.NDArray[np.float32]

FOCUS_ROW_STEP = 4
"""Focus is measured on every fourth pixel row of a cell, each pixel against its four
full-resolution neighbours (the Laplacian still sees the finest detail): 256 pixels a cell of
32 px, in whole rows of contiguous memory."""
GREY_FLOOR = 25.0
"""Added to a cell's grey variance (8-bit units squared): glass and flat cells do not divide by 0."""


@dataclass(frozen=True)
class CellMeasures:
    """The measures of a block's cells, each (n_rows, n_cols) float32. `ink_patch` is the ink
    share of the most inked cell in each cell's patch (the cell and its halo: what the model sees)."""

    ink: FloatCells
    eosin: FloatCells
    eosin_light: FloatCells
    rim: FloatCells
    focus: FloatCells
    ink_patch: FloatCells


COLOUR_STEP = 4
"""Colour rules look at every fourth pixel of every fourth row: a cell of 32 px still gets 64
samples (enough for a 25% ink share and an eosin quartile), at a sixteenth of the cost; QC must
stay a few per cent of a scan (bench/qc.py: ink Dice 0.915, fold 0.878, bubble 0.812, against
0.918, 0.875, 0.831 at every second pixel)."""


def colour_masks(rgb: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Marker-coloured pixels (ink, the rules of the module doc) and dark grey pixels (a bubble's
    rim: unstained, saturation <= 0.12, so not tissue, and too dark for glass, value 0.25..0.7)
    of a uint8 RGB image, in integer arithmetic over one chroma: each hue bound is a comparison
    of channel differences with it."""
    r, g, b = (rgb[..., channel].astype(np.int16) for channel in range(3))
    cmax = np.maximum(np.maximum(r, g), b)
    delta = cmax - np.minimum(np.minimum(r, g), b)
    # hue 90..250: green dominant with 2(B - R) >= -delta, or blue dominant with 6(R - G) <= delta
    blue_green = ((g >= r) & (g >= b) & (2 * (b - r) >= -delta)) | ((b > g) & (b >= r) & (6 * (r - g) <= delta))
    blue_green &= 4 * delta >= cmax  # saturation >= 0.25
    # hue >= 345 or <= 15: red dominant with |G - B| <= delta / 4; saturation >= 0.8
    red = (r >= g) & (r >= b) & (4 * np.abs(g - b) <= delta) & (5 * delta >= 4 * cmax) & (delta > 0)
    # value <= 0.25 and saturation <= 0.6
    black = (4 * cmax <= 255) & (5 * delta <= 3 * cmax)
    ink: npt.NDArray[np.bool_] = blue_green | red | black
    rim: npt.NDArray[np.bool_] = (25 * delta <= 3 * cmax) & (4 * cmax >= 255) & (10 * cmax <= 7 * 255)
    return ink, rim


# Ruifrok & Johnston (2001): optical density (R, G, B) per unit haematoxylin, eosin and DAB,
# normalised; the same matrix as scikit-image's `hed_from_rgb` (not a dependency for one constant)
STAIN_OD_RGB = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105], [0.268, 0.570, 0.776]])
_EOSIN_FROM_OD = np.linalg.inv(STAIN_OD_RGB / np.linalg.norm(STAIN_OD_RGB, axis=1, keepdims=True))[:, 1]
_EOSIN_LUT = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / 256.0)[None, :] * _EOSIN_FROM_OD[:, None]).astype(
    np.float32
)
"""Each channel's 8-bit value -> its share of the eosin density (Beer-Lambert OD x the unmixing
weight): a pixel's eosin is three table look-ups and two additions."""


def eosin_density(rgb: npt.NDArray[np.uint8]) -> FloatCells:
    """The eosin density of each pixel of a uint8 (..., 3) RGB image: its optical density
    unmixed into haematoxylin, eosin and DAB (Ruifrok and Johnston), eosin returned."""
    eosin: FloatCells = _EOSIN_LUT[0][rgb[..., 0]] + _EOSIN_LUT[1][rgb[..., 1]] + _EOSIN_LUT[2][rgb[..., 2]]
    return eosin


def _cell_median_and_lower_quartile(
    image: npt.NDArray[np.float32], n_rows: int, n_cols: int, side: int
) -> tuple[FloatCells, FloatCells]:
    """The (upper) median and the lower quartile of each `side` x `side` cell of a 2-D image,
    from one partition."""
    cells = image.reshape(n_rows, side, n_cols, side).transpose(0, 2, 1, 3).reshape(n_rows, n_cols, side * side)
    quarter, half = side * side // 4, side * side // 2
    ordered = np.partition(cells, (quarter, half), axis=-1)
    return ordered[..., half].astype(np.float32), ordered[..., quarter].astype(np.float32)


def _cell_sums(image: npt.NDArray[np.generic], n_rows: int, n_cols: int, side: int) -> npt.NDArray[np.float64]:
    """The sum of each `side` x `side` cell of a 2-D integer or boolean image: along each row's
    cells first (contiguous memory), then down the cell rows, in int64 (exact)."""
    along: npt.NDArray[np.int64] = image.reshape(n_rows * side, n_cols, side).sum(axis=2, dtype=np.int64)
    sums: npt.NDArray[np.float64] = along.reshape(n_rows, side, n_cols).sum(axis=1).astype(np.float64)
    return sums


def _window_shares(
    mask: npt.NDArray[np.bool_], n_rows: int, n_cols: int, step: int, window: int, origin: int = 0
) -> FloatCells:
    """Share of True in each `window` x `window` box at `origin` + (r, c) * `step` (clipped to the
    image): an integral image."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int32), axis=1, out=integral[1:, 1:])
    r_start = origin + np.arange(n_rows) * step
    c_start = origin + np.arange(n_cols) * step
    r0, c0 = np.clip(r_start, 0, mask.shape[0]), np.clip(c_start, 0, mask.shape[1])
    r1 = np.clip(r_start + window, 0, mask.shape[0])
    c1 = np.clip(c_start + window, 0, mask.shape[1])
    total = integral[np.ix_(r1, c1)] - integral[np.ix_(r0, c1)] - integral[np.ix_(r1, c0)] + integral[np.ix_(r0, c0)]
    area = np.outer(r1 - r0, c1 - c0)
    shares: FloatCells = (total / np.maximum(area, 1)).astype(np.float32)
    return shares


def _focus(region: npt.NDArray[np.uint8], halo_px: int, cell_px: int, n_rows: int, n_cols: int) -> FloatCells:
    """Each cell's focus score (module doc) on every `FOCUS_ROW_STEP`th pixel row, each pixel
    against its four full-resolution neighbours, on the red plus green image: both stains absorb
    green, haematoxylin red as well; blue adds arithmetic and little contrast (bench/qc.py's blur
    Dice: 0.879 on R + G, 0.866 on R + G + B, 0.820 on G alone, same sampling). Whole rows are
    taken (contiguous memory), the Laplacian in int16, the sums along a cell's row in float32.
    The Laplacian needs one pixel around the cells, which the halo has (a region without one is
    padded by edge)."""
    if halo_px == 0:
        region, halo_px = np.pad(region, ((1, 1), (1, 1), (0, 0)), mode="edge"), 1
    step = FOCUS_ROW_STEP if cell_px % FOCUS_ROW_STEP == 0 else 1
    r0, r1 = halo_px, halo_px + n_rows * cell_px
    c0, c1 = halo_px, halo_px + n_cols * cell_px

    def rows(first: int) -> npt.NDArray[np.int16]:
        picked = region[first : first + r1 - r0 : step, c0 - 1 : c1 + 1]
        grey: npt.NDArray[np.int16] = picked[..., 0].astype(np.int16)
        grey += picked[..., 1]
        return grey

    centre_rows = rows(r0)
    laplacian = rows(r0 - 1)[:, 1:-1]
    laplacian += rows(r0 + 1)[:, 1:-1]
    laplacian += centre_rows[:, :-2]
    laplacian += centre_rows[:, 2:]
    laplacian -= 4 * centre_rows[:, 1:-1]
    # one row of a cell per line: (sampled rows x cells, cell_px)
    centre = centre_rows[:, 1:-1].astype(np.float32).reshape(-1, cell_px)
    second = laplacian.astype(np.float32).reshape(-1, cell_px)
    side_rows = cell_px // step
    n_px = float(side_rows * cell_px)

    def per_cell(line_sums: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        cells: npt.NDArray[np.float64] = line_sums.reshape(n_rows, side_rows, n_cols).sum(axis=1, dtype=np.float64)
        return cells / n_px

    grey_mean = per_cell(centre.sum(axis=1))
    grey_var = np.maximum(per_cell(np.einsum("ij,ij->i", centre, centre)) - grey_mean**2, 0.0)
    energy = per_cell(np.einsum("ij,ij->i", second, second))
    focus: FloatCells = (energy / (grey_var + GREY_FLOOR * 4.0)).astype(np.float32)  # R + G: 2x a channel
    return focus


def cell_measures(region: npt.NDArray[np.uint8], halo_px: int, cell_px: int, n_rows: int, n_cols: int) -> CellMeasures:
    """The measures of every cell of a block from its region (uint8 H x W x 3)."""
    expected = (n_rows * cell_px + 2 * halo_px, n_cols * cell_px + 2 * halo_px)
    if region.shape[:2] != expected:
        raise ValueError(f"region {region.shape[:2]} is not a block of {n_rows}x{n_cols} cells plus halo")
    step = COLOUR_STEP if cell_px % COLOUR_STEP == 0 and halo_px % COLOUR_STEP == 0 else 1
    sampled = region[::step, ::step, :3]
    halo_s, cell_s = halo_px // step, cell_px // step
    core = (slice(halo_s, halo_s + n_rows * cell_s), slice(halo_s, halo_s + n_cols * cell_s))
    n_samples = float(cell_s * cell_s)

    ink_all, rim_all = colour_masks(sampled)
    # the ink share of every cell of the block and of its halo ring (`reach` cells), and the most
    # inked cell of each patch
    reach = -(-halo_s // cell_s)
    if halo_s == cell_s:  # the PCam geometry: the region is whole cells, ring included
        ring = (_cell_sums(ink_all, n_rows + 2, n_cols + 2, cell_s) / n_samples).astype(np.float32)
    else:
        ring = _window_shares(ink_all, n_rows + 2 * reach, n_cols + 2 * reach, cell_s, cell_s, halo_s - reach * cell_s)
    ink = ring[reach : reach + n_rows, reach : reach + n_cols]
    ink_patch = ndimage.maximum_filter(ring, size=2 * reach + 1, mode="constant")[
        reach : reach + n_rows, reach : reach + n_cols
    ]
    rim = (_cell_sums(rim_all[core], n_rows, n_cols, cell_s) / n_samples).astype(np.float32)
    eosin, eosin_light = _cell_median_and_lower_quartile(eosin_density(sampled[core]), n_rows, n_cols, cell_s)

    focus = _focus(region, halo_px, cell_px, n_rows, n_cols)
    return CellMeasures(ink=ink, eosin=eosin, eosin_light=eosin_light, rim=rim, focus=focus, ink_patch=ink_patch)
