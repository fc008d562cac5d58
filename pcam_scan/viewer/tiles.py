"""Deep-zoom tiles of a slide (its backend's deep-zoom source) and of its heatmap, on one grid.

`DeepZoomGrid` is the Deep Zoom tiling of a level-0 image exactly as OpenSlide's generator makes
it with `limit_bounds=False` (levels halve with rounding up down to 1 x 1; tile (col, row) of
level z covers z-plane pixels [col * tile - overlap (if col > 0), (col + 1) * tile + overlap),
clipped) and as OpenSeadragon places it (z-plane pixel p is level-0 pixel p * 2**(max - z)). The
heatmap layer uses the same grid with the slide's level-0 size from the store, and each of its
pixels shows the cell under the pixel's centre (pcam_scan.render.heatmap_image), so heatmap tiles
lie exactly on slide tiles.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from pcam_scan.errors import ConfigError, SlideError
from pcam_scan.qc.flags import BLUR, BUBBLE, FOLD, INK, INK_NEARBY
from pcam_scan.render.heatmap_image import HeatmapPyramid, HeatmapStyle, colourise
from pcam_scan.slide_backends import open_slide_file

DEFAULT_TILE_PX = 254
DEFAULT_OVERLAP_PX = 1
PNG_COMPRESS_LEVEL = 3


@dataclass(frozen=True)
class DeepZoomGrid:
    """Deep Zoom levels and tiles of a level-0 image of `l0_width` x `l0_height` pixels."""

    l0_width: int
    l0_height: int
    tile_px: int = DEFAULT_TILE_PX
    overlap_px: int = DEFAULT_OVERLAP_PX

    def __post_init__(self) -> None:
        if self.l0_width < 1 or self.l0_height < 1:
            raise ConfigError(f"image size {self.l0_width} x {self.l0_height} px must be positive")
        if not 16 <= self.tile_px <= 4096 or not 0 <= self.overlap_px <= self.tile_px // 4:
            raise ConfigError(f"tile {self.tile_px} px with overlap {self.overlap_px} px is not usable")

    @cached_property
    def level_wh(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each level, level 0 = 1 x 1 ... last = the full image."""
        sizes = [(self.l0_width, self.l0_height)]
        while sizes[-1] != (1, 1):
            width, height = sizes[-1]
            sizes.append((max(1, math.ceil(width / 2)), max(1, math.ceil(height / 2))))
        return tuple(reversed(sizes))

    @property
    def level_count(self) -> int:
        return len(self.level_wh)

    @property
    def max_level(self) -> int:
        return self.level_count - 1

    def level_tiles(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles at `level`."""
        width, height = self.level_wh[level]
        return (math.ceil(width / self.tile_px), math.ceil(height / self.tile_px))

    def has_tile(self, level: int, col: int, row: int) -> bool:
        if not 0 <= level < self.level_count:
            return False
        cols, rows = self.level_tiles(level)
        return 0 <= col < cols and 0 <= row < rows

    def tile_box(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the tile in the level's own pixels, overlap included."""
        if not self.has_tile(level, col, row):
            raise ConfigError(f"no tile ({col}, {row}) at deep-zoom level {level}")
        width, height = self.level_wh[level]
        x0 = col * self.tile_px - (self.overlap_px if col > 0 else 0)
        y0 = row * self.tile_px - (self.overlap_px if row > 0 else 0)
        x1 = min(width, (col + 1) * self.tile_px + self.overlap_px)
        y1 = min(height, (row + 1) * self.tile_px + self.overlap_px)
        return (x0, y0, x1, y1)

    def l0_per_level_px(self, level: int) -> int:
        """Level-0 pixels per pixel of `level` (the scale OpenSeadragon draws the level at)."""
        scale: int = 2 ** (self.max_level - level)
        return scale

    def dzi_xml(self, image_format: str) -> str:
        """The Deep Zoom descriptor (.dzi) of this grid."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{image_format}" Overlap="{self.overlap_px}" TileSize="{self.tile_px}">'
            f'<Size Height="{self.l0_height}" Width="{self.l0_width}"/></Image>\n'
        )


def heatmap_tile_png(
    pyramid: HeatmapPyramid, grid: DeepZoomGrid, level: int, col: int, row: int, style: HeatmapStyle
) -> bytes:
    """One heatmap tile as an RGBA PNG of the same size as the slide tile at that address."""
    x0, y0, x1, y1 = grid.tile_box(level, col, row)
    scale = grid.l0_per_level_px(level)
    prob = pyramid.sample((x0 * scale, y0 * scale), scale, (x1 - x0, y1 - y0))
    buffer = io.BytesIO()
    Image.fromarray(colourise(prob, style), mode="RGBA").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


QC_RGBA: dict[int, tuple[int, int, int, int]] = {
    INK: (30, 90, 255, 170),
    INK_NEARBY: (120, 160, 255, 110),
    FOLD: (255, 140, 0, 170),
    BUBBLE: (0, 200, 200, 170),
    BLUR: (190, 60, 220, 120),
}
"""One colour per QC reason (the viewer's legend spells the same); a cell with several reasons
shows the first of ink, ink nearby, fold, bubble, blur (excluding reasons first)."""


def qc_tile_png(pyramid: HeatmapPyramid, grid: DeepZoomGrid, level: int, col: int, row: int) -> bytes:
    """One QC tile as an RGBA PNG: each flagged cell in its reason's colour, the rest clear."""
    x0, y0, x1, y1 = grid.tile_box(level, col, row)
    scale = grid.l0_per_level_px(level)
    flags = pyramid.sample_qc((x0 * scale, y0 * scale), scale, (x1 - x0, y1 - y0))
    rgba = np.zeros((*flags.shape, 4), dtype=np.uint8)
    painted = np.zeros(flags.shape, dtype=bool)
    for bit, colour in QC_RGBA.items():
        mask = ((flags & bit) != 0) & ~painted
        rgba[mask] = colour
        painted |= mask
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


class SlideTiles:
    """JPEG deep-zoom tiles of one slide file, from its backend (`pcam_scan.slide_backends`).

    Backend reads are thread-safe, so one instance serves concurrent requests.
    """

    def __init__(self, path: Path, grid: DeepZoomGrid, jpeg_quality: int) -> None:
        slide_file = open_slide_file(path)
        if slide_file.metadata.l0_wh != (grid.l0_width, grid.l0_height):
            slide_file.close()
            raise SlideError(
                f"{path}: slide is {slide_file.metadata.l0_wh} px, but the store "
                f"scanned a {grid.l0_width} x {grid.l0_height} px slide"
            )
        self._tiles = slide_file.deep_zoom(grid.tile_px, grid.overlap_px)
        self.grid = grid
        self.jpeg_quality = jpeg_quality

    def tile_jpeg(self, level: int, col: int, row: int) -> bytes:
        self.grid.tile_box(level, col, row)  # refuses addresses outside the grid
        tile = self._tiles(level, col, row)
        buffer = io.BytesIO()
        tile.convert("RGB").save(buffer, format="JPEG", quality=self.jpeg_quality)
        return buffer.getvalue()
