"""The OpenSlide backend: the only module of pcam-scan that imports `openslide`.

It translates OpenSlide's property names into `RecordedMpp` / `BackendMetadata`, lays OpenSlide's
RGBA reads (non-premultiplied, transparent outside the scanned area) on white glass, serves deep
zoom through OpenSlide's own `DeepZoomGenerator`, and maps OpenSlide's errors in one place
(`_slide_errors`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from pcam_scan.errors import SlideError
from pcam_scan.slide_backends.base import BackendMetadata, DeepZoomTiles, RecordedMpp, rgb_array

SOURCE = "openslide"


@contextmanager
def _slide_errors(path: Path, doing: str) -> Iterator[None]:
    """OpenSlide's (and the OS's) errors while `doing` something to `path`, as one SlideError line."""
    try:
        yield
    except openslide.OpenSlideUnsupportedFormatError:
        raise SlideError(f"{path}: not a whole-slide image that OpenSlide can read") from None
    except (openslide.OpenSlideError, OSError) as err:
        raise SlideError(f"{path}: cannot {doing}: {err}") from None


def _float_or_none(properties: Mapping[str, str], key: str) -> float | None:
    value = properties.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def recorded_mpp(properties: Mapping[str, str]) -> RecordedMpp:
    """The pixel size OpenSlide's properties record: `openslide.mpp-x/y` and the TIFF tags."""
    return RecordedMpp(
        source=SOURCE,
        mpp_xy_um_px=(_float_or_none(properties, "openslide.mpp-x"), _float_or_none(properties, "openslide.mpp-y")),
        tiff_resolution_unit=properties.get("tiff.ResolutionUnit", ""),
        tiff_px_per_unit_xy=(
            _float_or_none(properties, "tiff.XResolution"),
            _float_or_none(properties, "tiff.YResolution"),
        ),
    )


def on_white_glass(region: Image.Image) -> Image.Image:
    """OpenSlide's RGBA read laid on white glass. Inside the scanned area (every pixel opaque) the
    image is returned as it is."""
    if region.getchannel("A").getextrema()[0] == 255:
        return region
    return Image.alpha_composite(Image.new("RGBA", region.size, (255, 255, 255, 255)), region)


def detect_vendor(path: Path) -> str | None:
    """OpenSlide's name for the file's format (`aperio`, `generic-tiff`, ...), None if it reads none."""
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except (openslide.OpenSlideError, OSError):
        return None


def open_osr(path: Path) -> openslide.OpenSlide:
    """`path` opened with OpenSlide; SlideError with one line if it cannot be."""
    with _slide_errors(path, "open slide"):
        return openslide.OpenSlide(str(path))


class OpenSlideBackend:
    """A slide file opened with OpenSlide (thread-safe reads)."""

    name = SOURCE

    def __init__(self, path: Path, osr: openslide.OpenSlide) -> None:
        self.path = path
        self._osr = osr
        properties = dict(osr.properties)
        self.metadata = BackendMetadata(
            backend=SOURCE,
            vendor=properties.get("openslide.vendor", "unknown"),
            level_wh=tuple((int(w), int(h)) for w, h in osr.level_dimensions),
            level_downsamples=tuple(float(ds) for ds in osr.level_downsamples),
            recorded_mpp=recorded_mpp(properties),
            objective_power=properties.get("openslide.objective-power"),
        )

    @classmethod
    def open(cls, path: Path) -> OpenSlideBackend:
        return cls(path, open_osr(path))

    def read_region(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> Image.Image:
        with _slide_errors(self.path, "read pixels"):
            region = self._osr.read_region(l0_xy, level, size_wh)
        return on_white_glass(region)

    def read_region_rgb(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        return rgb_array(self.read_region(l0_xy, level, size_wh))

    def thumbnail(self, max_wh: tuple[int, int]) -> Image.Image:
        with _slide_errors(self.path, "read pixels"):
            return self._osr.get_thumbnail(max_wh)

    def deep_zoom(self, tile_px: int, overlap_px: int) -> DeepZoomTiles:
        generator = DeepZoomGenerator(self._osr, tile_size=tile_px, overlap=overlap_px, limit_bounds=False)

        def tile(dz_level: int, col: int, row: int) -> Image.Image:
            with _slide_errors(self.path, "read pixels"):
                return generator.get_tile(dz_level, (col, row))

        return tile

    def close(self) -> None:
        self._osr.close()
