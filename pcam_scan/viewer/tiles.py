"""Deep-zoom tiles of a slide (its backend's deep-zoom source) and of its heatmap, on one grid.

`DeepZoomGrid` (`pcam_scan.slide_backends.deepzoom`) is the Deep Zoom tiling of a level-0 image
exactly as OpenSlide's generator makes it, and as OpenSeadragon places it. The
heatmap layer uses the same grid with the slide's level-0 size from the store, and each of its
pixels shows the cell under the pixel's centre (pcam_scan.render.heatmap_image), so heatmap tiles
lie exactly on slide tiles.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pcam_scan.errors import SlideError
from pcam_scan.qc.flags import BLUR, BUBBLE, FOLD, INK, INK_NEARBY
from pcam_scan.render.heatmap_image import HeatmapPyramid, HeatmapStyle, colourise
from pcam_scan.slide_backends import DEFAULT_SLIDE_BACKEND, open_slide_file
from pcam_scan.slide_backends.deepzoom import DEFAULT_OVERLAP_PX, DEFAULT_TILE_PX, DeepZoomGrid

__all__ = ["DEFAULT_OVERLAP_PX", "DEFAULT_TILE_PX", "DeepZoomGrid", "SlideTiles", "heatmap_tile_png"]

PNG_COMPRESS_LEVEL = 3


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

    Backend reads are thread-safe, so one instance serves concurrent requests. The file closes
    when the last request holding the instance lets go of it (the cache only drops it).
    """

    def __init__(
        self, path: Path | str, grid: DeepZoomGrid, jpeg_quality: int, backend: str = DEFAULT_SLIDE_BACKEND
    ) -> None:
        slide_file = open_slide_file(path, backend)
        if slide_file.metadata.l0_wh != (grid.l0_width, grid.l0_height):
            slide_file.close()
            raise SlideError(
                f"{path}: slide is {slide_file.metadata.l0_wh} px, but the store "
                f"scanned a {grid.l0_width} x {grid.l0_height} px slide"
            )
        self._slide_file = slide_file
        self._closed = False
        self._tiles = slide_file.deep_zoom(grid.tile_px, grid.overlap_px)
        self.grid = grid
        self.jpeg_quality = jpeg_quality

    def close(self) -> None:
        """Close the slide file (the viewer keeps its instances open while it serves); once."""
        if not self._closed:
            self._closed = True
            self._slide_file.close()

    def __del__(self) -> None:  # an instance the viewer drops (a stale cache entry) closes its file too
        if hasattr(self, "_closed"):  # absent when the constructor failed
            self.close()

    def tile_jpeg(self, level: int, col: int, row: int) -> bytes:
        self.grid.tile_box(level, col, row)  # refuses addresses outside the grid
        tile = self._tiles(level, col, row)
        buffer = io.BytesIO()
        tile.convert("RGB").save(buffer, format="JPEG", quality=self.jpeg_quality)
        return buffer.getvalue()
