"""Per-cell QC measures from a block's region: the pixels the scan reads for its patches anyway.

The region of a block is its cells plus a halo at the read plane (`Block.region_px_box`); a
cell's own pixels are the `cell_px` x `cell_px` square at the centre of its patch. Every measure
is a mean over those pixels, so a cell is judged by what its label covers:
- `ink`: share of pixels of marker colour (HSV rules below);
- `eosin`: the eosin density of the cell's mean colour (Beer-Lambert optical density unmixed
  with Ruifrok and Johnston's haematoxylin and eosin vectors, red and green channels), for folds:
  a fold doubles it, while tumour, rich in haematoxylin, does not raise it;
- `rim`: share of pixels on a dark grey rim (unstained, so not tissue: an air bubble's meniscus);
- `focus`: mean squared Laplacian of the grey image over its variance (+ a floor for glass), a
  contrast-free sharpness: blur removes the fine detail faster than the coarse contrast.

Marker colours in HSV (hue in degrees), chosen against H&E: haematoxylin is purple (hue 260-300)
and eosin pink (300-350), both never green, never cyan-blue, never grey-black, and never the
saturated scarlet of a red marker:
- blue and green marker: hue 90-250, saturation >= 0.25 (over tissue too: the product of the two
  colours keeps the marker's hue);
- red marker: hue >= 345 or <= 15, saturation >= 0.75;
- black marker: value <= 0.25 with saturation <= 0.6 (dark nuclei are saturated purple).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatCells = npt.NDArray[np.float32]

GREY_FLOOR = 25.0
"""Added to a cell's grey variance (8-bit units squared): glass and flat cells do not divide by 0."""


@dataclass(frozen=True)
class CellMeasures:
    """The measures of a block's cells, each (n_rows, n_cols) float32."""

    ink: FloatCells
    eosin: FloatCells
    rim: FloatCells
    focus: FloatCells


def _hsv(rgb: npt.NDArray[np.float32]) -> tuple[FloatCells, FloatCells, FloatCells]:
    """Hue (degrees), saturation and value in [0, 1] of float RGB in 0..255."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cmax = np.maximum(np.maximum(r, g), b)
    cmin = np.minimum(np.minimum(r, g), b)
    delta = cmax - cmin
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.where(cmax == r, (g - b) / safe, np.where(cmax == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = np.where(delta > 0, (hue * 60.0) % 360.0, 0.0).astype(np.float32)
    saturation = np.where(cmax > 0, delta / np.maximum(cmax, 1e-6), 0.0).astype(np.float32)
    return hue, saturation, (cmax / 255.0).astype(np.float32)


def ink_pixels(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Marker-coloured pixels of a uint8 RGB image (the rules of the module doc)."""
    hue, saturation, value = _hsv(rgb.astype(np.float32))
    blue_green = (hue >= 90.0) & (hue <= 250.0) & (saturation >= 0.25)
    red = ((hue >= 345.0) | (hue <= 15.0)) & (saturation >= 0.75)
    black = (value <= 0.25) & (saturation <= 0.6)
    mask: npt.NDArray[np.bool_] = blue_green | red | black
    return mask


def rim_pixels(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Dark grey pixels: unstained, so not tissue, and too dark for glass (a bubble's rim)."""
    _, saturation, value = _hsv(rgb.astype(np.float32))
    mask: npt.NDArray[np.bool_] = (saturation <= 0.12) & (value >= 0.25) & (value <= 0.7)
    return mask


# Ruifrok & Johnston (2001) optical density per unit stain, red and green channels
HAEMATOXYLIN_RG = (0.650, 0.704)
EOSIN_RG = (0.072, 0.990)


def eosin_density(rgb: npt.ArrayLike) -> FloatCells:
    """Eosin density of colours (..., 2 or 3) in 0..255: the red and green optical densities
    unmixed into haematoxylin and eosin (Beer-Lambert), eosin returned."""
    values = np.asarray(rgb, dtype=np.float32)
    od_r = -np.log((values[..., 0] + 1.0) / 256.0)
    od_g = -np.log((values[..., 1] + 1.0) / 256.0)
    (h_r, h_g), (e_r, e_g) = HAEMATOXYLIN_RG, EOSIN_RG
    eosin: FloatCells = ((h_r * od_g - h_g * od_r) / (h_r * e_g - h_g * e_r)).astype(np.float32)
    return eosin


def _per_cell_mean(image: npt.NDArray[np.float32], n_rows: int, n_cols: int, cell_px: int) -> FloatCells:
    cells = image.reshape(n_rows, cell_px, n_cols, cell_px)
    mean: FloatCells = cells.mean(axis=(1, 3), dtype=np.float32)
    return mean


def cell_measures(region: npt.NDArray[np.uint8], halo_px: int, cell_px: int, n_rows: int, n_cols: int) -> CellMeasures:
    """The measures of every cell of a block from its region (uint8 H x W x 3)."""
    expected = (n_rows * cell_px + 2 * halo_px, n_cols * cell_px + 2 * halo_px)
    if region.shape[:2] != expected:
        raise ValueError(f"region {region.shape[:2]} is not a block of {n_rows}x{n_cols} cells plus halo")
    lo, hi_r, hi_c = halo_px, halo_px + n_rows * cell_px, halo_px + n_cols * cell_px
    core = region[lo:hi_r, lo:hi_c, :3]
    rgb = core.astype(np.float32)

    def mean(image: npt.NDArray[np.float32]) -> FloatCells:
        return _per_cell_mean(image, n_rows, n_cols, cell_px)

    ink = mean(ink_pixels(core).astype(np.float32))
    rim = mean(rim_pixels(core).astype(np.float32))
    eosin = eosin_density(np.stack([mean(rgb[..., channel]) for channel in range(2)], axis=-1))

    # the Laplacian needs one pixel around the cells: the halo has it (a halo of 0 pads by edge)
    grey_ext = region[max(lo - 1, 0) : hi_r + 1, max(lo - 1, 0) : hi_c + 1, :3].astype(np.float32).mean(axis=-1)
    if lo == 0:
        grey_ext = np.pad(grey_ext, ((1, 0), (1, 0)), mode="edge")
    if grey_ext.shape != (n_rows * cell_px + 2, n_cols * cell_px + 2):
        grey_ext = np.pad(grey_ext, ((0, 1), (0, 1)), mode="edge")
    grey = grey_ext[1:-1, 1:-1]
    laplacian = grey_ext[:-2, 1:-1] + grey_ext[2:, 1:-1] + grey_ext[1:-1, :-2] + grey_ext[1:-1, 2:] - 4.0 * grey
    grey_mean = mean(grey)
    grey_var = np.maximum(mean(grey * grey) - grey_mean * grey_mean, 0.0)
    focus = (mean(laplacian * laplacian) / (grey_var + GREY_FLOOR)).astype(np.float32)
    return CellMeasures(ink=ink, eosin=eosin, rim=rim, focus=focus)
