"""The Deep Zoom grid: levels and tiles of a level-0 image, exactly as OpenSlide's generator makes it.

`DeepZoomGrid` tiles a level-0 image as OpenSlide's `DeepZoomGenerator` does with
`limit_bounds=False` (levels halve with rounding up down to 1 x 1; tile (col, row) of level z
covers z-plane pixels [col * tile - overlap (if col > 0), (col + 1) * tile + overlap), clipped) and
as OpenSeadragon places it (z-plane pixel p is level-0 pixel p * 2**(max - z)). It is pure
arithmetic: backends without a deep-zoom generator of their own cut their tiles on it
(`grid_tiles`), and the viewer (`pcam_scan.viewer.tiles`) lays the heatmap tiles on the same grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from PIL import Image

from pcam_scan.errors import ConfigError
from pcam_scan.slide_backends.base import BackendMetadata, DeepZoomTiles

DEFAULT_TILE_PX = 254
DEFAULT_OVERLAP_PX = 1


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


RegionReader = Callable[[tuple[int, int], int, tuple[int, int]], Image.Image]
"""A backend's `read_region(l0_xy, level, size_wh)`."""


def grid_tiles(metadata: BackendMetadata, read_region: RegionReader, tile_px: int, overlap_px: int) -> DeepZoomTiles:
    """Deep-zoom tiles for a backend without a generator of its own (tiffslide, wsidicom), cut on
    `DeepZoomGrid` as OpenSlide's generator cuts them: each from the coarsest level at least as
    fine as the tile, resized with a Lanczos filter."""
    grid = DeepZoomGrid(*metadata.l0_wh, tile_px, overlap_px)
    downsamples = metadata.level_downsamples

    def tile(dz_level: int, col: int, row: int) -> Image.Image:
        x0, y0, x1, y1 = grid.tile_box(dz_level, col, row)
        scale = grid.l0_per_level_px(dz_level)
        level = max(i for i, ds in enumerate(downsamples) if ds <= scale or i == 0)
        level_px = scale / downsamples[level]
        size = (max(1, math.ceil((x1 - x0) * level_px)), max(1, math.ceil((y1 - y0) * level_px)))
        region = read_region((x0 * scale, y0 * scale), level, size)
        if region.size == (x1 - x0, y1 - y0):
            return region
        return region.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)

    return tile
