"""What a slide-reading library must offer pcam-scan: the `SlideBackend` protocol.

A backend is one class that opens a slide file with one library (OpenSlide, tiffslide; cuCIM
would fit) and answers in no library's vocabulary: level sizes and downsamples, what the
file records about its pixel size (`RecordedMpp`, checked later by `pcam_scan.slide.resolve_mpp`),
opaque RGB(A) pixels of a level, a thumbnail, and deep-zoom tiles for the viewer. It maps its
library's errors to `pcam_scan.errors.SlideError` itself, so no caller sees them.

Everything above a backend (reads at a microns-per-pixel, level choice, resampling) lives in
`pcam_scan.slide` and works for every backend alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from pcam_scan.errors import SlideError


@dataclass(frozen=True)
class RecordedMpp:
    """What a slide file says about its pixel size, unchecked.

    `mpp_xy_um_px` is the format's own value as the backend reads it (`source` names the backend);
    the TIFF resolution tags are the fallback every TIFF-based format carries.
    """

    source: str
    mpp_xy_um_px: tuple[float | None, float | None] = (None, None)
    tiff_resolution_unit: str = ""
    tiff_px_per_unit_xy: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True)
class BackendMetadata:
    """A slide file's pyramid and labels as a backend reads them (level 0 first); `backend`
    names the library that read them (recorded in the store's provenance)."""

    backend: str
    vendor: str
    level_wh: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    recorded_mpp: RecordedMpp
    objective_power: str | None
    series: str | None = None
    """A DICOM slide's series (its SeriesInstanceUID and levels); None for a slide file."""

    @property
    def l0_wh(self) -> tuple[int, int]:
        return self.level_wh[0]


DeepZoomTiles = Callable[[int, int, int], Image.Image]
"""`tiles(dz_level, col, row)`: the RGB Deep Zoom tile at (col, row) of level `dz_level`, on the
grid `pcam_scan.slide_backends.deepzoom.DeepZoomGrid` describes (no bounds limit: level-0 size = the
slide's, levels halving with rounding up); SlideError when unreadable."""


def rgb_array(image: Image.Image) -> np.ndarray:
    """A read-only uint8 (height, width, 3) array of an RGB(A) image's colour channels.

    PIL packs RGB from RGBA in C, several times faster than dropping the alpha channel of a
    numpy array; callers copy what they keep (the patches).
    """
    width, height = image.size
    return np.frombuffer(image.tobytes("raw", "RGB"), dtype=np.uint8).reshape(height, width, 3)


@contextmanager
def library_errors(path: object, doing: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """A library's `errors` while `doing` something to `path`, as one SlideError line (a
    SlideError raised inside passes as it is)."""
    try:
        yield
    except SlideError:
        raise
    except errors as err:
        raise SlideError(f"{path}: cannot {doing}: {err}") from None


LevelBoxReader = Callable[[tuple[int, int, int, int]], np.ndarray]
"""Decodes the level pixels [x0, x1) x [y0, y1) of a box inside the level, as (h, w, 3+) uint8."""


def read_clipped(
    metadata: BackendMetadata, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int], read_box: LevelBoxReader
) -> np.ndarray:
    """`size_wh` pixels of `level` whose top-left lies at level-0 `l0_xy`, white glass outside the
    level: `read_box` decodes only the part inside (for libraries that refuse reads past the edge)."""
    downsample = metadata.level_downsamples[level]
    level_w, level_h = metadata.level_wh[level]
    x0, y0 = round(l0_xy[0] / downsample), round(l0_xy[1] / downsample)
    width, height = size_wh
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + width, level_w), min(y0 + height, level_h)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = read_box((cx0, cy0, cx1, cy1))[..., :3]
    return out


@runtime_checkable
class SlideBackend(Protocol):
    """An open slide file. Reads are thread-safe (the viewer serves requests from one instance)."""

    metadata: BackendMetadata

    @classmethod
    def open(cls, path: Path) -> SlideBackend:
        """Open `path` (already checked to be a readable, non-empty file); SlideError if refused."""
        ...

    def read_region(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> Image.Image:
        """`size_wh` pixels of `level` whose top-left lies at level-0 pixel `l0_xy`, as an opaque
        RGB or RGBA image; pixels outside the scanned area (or the slide) are white glass."""
        ...

    def read_region_rgb(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        """The same pixels as `read_region`, as a read-only uint8 (height, width, 3) array (the
        scanner's path: a backend that decodes to numpy skips the image round trip)."""
        ...

    def thumbnail(self, max_wh: tuple[int, int]) -> Image.Image:
        """The whole slide as an RGB image fitting in `max_wh`, aspect ratio kept."""
        ...

    def deep_zoom(self, tile_px: int, overlap_px: int) -> DeepZoomTiles:
        """The deep-zoom tiles of this open file, with `tile_px` tiles overlapping by `overlap_px`."""
        ...

    def close(self) -> None: ...
