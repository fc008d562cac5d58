"""The wsidicom backend: DICOM series in transfer syntaxes OpenSlide 4 does not decode (the only
module that imports wsidicom).

OpenSlide 4.0.1's DICOM reader takes uncompressed (Explicit VR Little Endian), baseline JPEG and
JPEG 2000 frames; a series in JPEG-LS, RLE, lossless JPEG or Implicit VR Little Endian is refused
there ("Unsupported transfer syntax"), and wsidicom (imi-bigpicture's maintained DICOM WSI
reader, decoding through pydicom and imagecodecs) reads it instead. The series' files are those
`dicom_series` chose (VOLUME instances only). Reads are clipped to the level and laid on white
glass, as OpenSlide's are; deep zoom is cut on the shared grid (`deepzoom.grid_tiles`).
"""

from __future__ import annotations

import threading
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pcam_scan.slide_backends.base import (
    BackendMetadata,
    DeepZoomTiles,
    RecordedMpp,
    library_errors,
    read_clipped,
    rgb_array,
)
from pcam_scan.slide_backends.deepzoom import grid_tiles
from pcam_scan.slide_backends.dicom_series import DicomSeries, open_series

SOURCE = "wsidicom"
MPP_SOURCE = "dicom-pixel-spacing"


def _wsidicom() -> Any:
    """The `WsiDicom` class. wsidicom's web client imports a pydicom function that pydicom 3
    deprecates; the warning is wsidicom's, not a fault of the slide."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "get_frame_offsets is deprecated", DeprecationWarning)
        from wsidicom import WsiDicom
    return WsiDicom


def _slide_errors(path: Path, doing: str) -> AbstractContextManager[None]:
    """wsidicom's, pydicom's, imagecodecs' and the OS's errors as one SlideError line (wsidicom's
    errors share no base class beyond Exception)."""
    return library_errors(path, doing, (Exception,))


class WsiDicomBackend:
    """A DICOM series opened with wsidicom (thread-safe reads: one lock around wsidicom)."""

    name = SOURCE

    def __init__(self, path: Path, wsi: Any, series: DicomSeries) -> None:
        self.path = path
        self._wsi = wsi
        self._lock = threading.Lock()
        self.series = series
        levels = list(wsi.levels)
        self._scales = tuple(int(level.level) for level in levels)
        level_wh = tuple((int(level.size.width), int(level.size.height)) for level in levels)
        l0_w, l0_h = level_wh[0]
        self.metadata = BackendMetadata(
            backend=SOURCE,
            vendor="dicom",
            level_wh=level_wh,
            # OpenSlide's rule for a DICOM level: the mean of the width and height ratios
            level_downsamples=tuple((l0_w / w + l0_h / h) / 2.0 for w, h in level_wh),
            recorded_mpp=RecordedMpp(source=MPP_SOURCE, mpp_xy_um_px=series.mpp_xy_um_px),
            objective_power=None,
            series=series.describe(),
        )

    @classmethod
    def open(cls, path: Path) -> WsiDicomBackend:
        return cls.open_series(path, open_series(path))

    @classmethod
    def open_series(cls, path: Path, series: DicomSeries) -> WsiDicomBackend:
        """The VOLUME instances of the series `open_series` found at `path`."""
        with _slide_errors(path, "open slide"):
            wsi = _wsidicom().open([volume.path for volume in series.volumes])
        return cls(path, wsi, series)

    def read_region(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> Image.Image:
        return Image.fromarray(self.read_region_rgb(l0_xy, level, size_wh))

    def read_region_rgb(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        def read_box(box: tuple[int, int, int, int]) -> np.ndarray:
            x0, y0, x1, y1 = box
            with _slide_errors(self.path, "read pixels"), self._lock:
                inside = self._wsi.read_region((x0, y0), self._scales[level], (x1 - x0, y1 - y0))
            return rgb_array(inside.convert("RGB"))

        return read_clipped(self.metadata, l0_xy, level, size_wh, read_box)

    def thumbnail(self, max_wh: tuple[int, int]) -> Image.Image:
        with _slide_errors(self.path, "read pixels"), self._lock:
            thumbnail: Image.Image = self._wsi.read_thumbnail(max_wh)
        return thumbnail.convert("RGB")

    def deep_zoom(self, tile_px: int, overlap_px: int) -> DeepZoomTiles:
        return grid_tiles(self.metadata, self.read_region, tile_px, overlap_px)

    def close(self) -> None:
        self._wsi.close()
