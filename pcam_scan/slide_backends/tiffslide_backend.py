"""The tiffslide backend: the only module of pcam-scan that imports `tiffslide`.

tiffslide reads TIFF-based slides through tifffile and decodes tiles with imagecodecs
(libjpeg-turbo), about 0.4x OpenSlide's CPU per region on JPEG slides
(bench/read_throughput.py), bit-identical to OpenSlide's pixels on the formats `serves` accepts
(tests/test_slide_backends.py). It reads any fsspec URL (`s3://...`) with range requests, which
OpenSlide cannot. Its reads are clipped to the level and laid on white glass here, so pixels
outside the slide are white, as with OpenSlide; its errors (tifffile's, imagecodecs', the file
system's) become one SlideError line (`_slide_errors`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import tiffslide
from PIL import Image
from tifffile import COMPRESSION, PHOTOMETRIC, PLANARCONFIG, TiffFile, TiffPage

from pcam_scan.errors import SlideError
from pcam_scan.slide_backends.base import (
    BackendMetadata,
    DeepZoomTiles,
    RecordedMpp,
    SlideBackend,
    library_errors,
    read_clipped,
)
from pcam_scan.slide_backends.deepzoom import grid_tiles
from pcam_scan.slide_backends.remote import CountingFile, is_url, open_remote

SOURCE = "tiffslide"

SERVED_VENDORS = frozenset({"aperio", "generic-tiff"})
"""OpenSlide's names of the formats this backend serves: Aperio SVS and generic tiled TIFF."""

SERVED_COMPRESSIONS = frozenset({COMPRESSION.NONE, COMPRESSION.JPEG, COMPRESSION.ADOBE_DEFLATE, COMPRESSION.LZW})
"""Tile codecs whose pixels match OpenSlide's bit for bit. Aperio's JPEG 2000 (33003/33005) is
left to OpenSlide: the two decoders' colour conversions differ (docs/slides.md)."""

SERVED_PHOTOMETRICS = frozenset({PHOTOMETRIC.RGB, PHOTOMETRIC.YCBCR})


LIBRARY_ERRORS = (OSError, ValueError, RuntimeError, KeyError, IndexError, NotImplementedError)
"""What tiffslide, tifffile, imagecodecs and the OS raise for a bad file."""


def _slide_errors(path: str, doing: str) -> AbstractContextManager[None]:
    """tiffslide's, tifffile's, imagecodecs' and the OS's errors as one SlideError line."""
    return library_errors(path, doing, LIBRARY_ERRORS)


def serves(tif: TiffFile) -> bool:
    """Whether every level of the file's first series is tiled RGB in a codec from
    `SERVED_COMPRESSIONS`: the files whose pixels this backend reads exactly as OpenSlide does."""
    series = tif.series[0]
    for level in series.levels:
        page = level.keyframe
        if not page.is_tiled or page.samplesperpixel != 3 or page.bitspersample != 8:
            return False
        if page.planarconfig != PLANARCONFIG.CONTIG or len(level.pages) != 1:
            return False
        if page.compression not in SERVED_COMPRESSIONS or page.photometric not in SERVED_PHOTOMETRICS:
            return False
    return True


def _float_or_none(value: object) -> float | None:
    try:
        return None if value is None else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def recorded_mpp(properties: Mapping[str, Any]) -> RecordedMpp:
    """The pixel size tiffslide's properties record: its MPP (Aperio's `MPP`, or derived from the
    TIFF resolution tags, as OpenSlide 4 does) and the TIFF tags themselves."""
    unit = properties.get("tiff.ResolutionUnit")
    return RecordedMpp(
        source=SOURCE,
        mpp_xy_um_px=(
            _float_or_none(properties.get("tiffslide.mpp-x")),
            _float_or_none(properties.get("tiffslide.mpp-y")),
        ),
        tiff_resolution_unit=str(unit).lower() if unit else "",
        tiff_px_per_unit_xy=(
            _float_or_none(properties.get("tiff.XResolution")),
            _float_or_none(properties.get("tiff.YResolution")),
        ),
    )


def _objective_power(properties: Mapping[str, Any]) -> str | None:
    power = _float_or_none(properties.get("tiffslide.objective-power"))
    return None if power is None else f"{power:g}"


class TiffSlideBackend:
    """A TIFF-based slide (local path or fsspec URL) opened with tiffslide (thread-safe reads)."""

    name = SOURCE

    def __init__(self, path: str, ts: tiffslide.TiffSlide, remote: CountingFile | None = None) -> None:
        self.path = path
        self._ts = ts
        self._remote = remote
        self._direct: tuple[TiffPage, ...] | None = None
        self._read_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._exact_opener: Callable[[], SlideBackend] | None = None
        self._exact: SlideBackend | None = None
        properties = ts.properties
        self.metadata = BackendMetadata(
            backend=SOURCE,
            vendor=properties.get("tiffslide.vendor") or "generic-tiff",
            level_wh=tuple((int(w), int(h)) for w, h in ts.level_dimensions),
            level_downsamples=tuple(float(ds) for ds in ts.level_downsamples),
            recorded_mpp=recorded_mpp(properties),
            objective_power=_objective_power(properties),
        )

    @classmethod
    def open(cls, path: str | Path) -> TiffSlideBackend:
        """Open a local path, or an fsspec URL read with range requests (`remote.open_remote`)."""
        path = str(path)
        remote = open_remote(path) if is_url(path) else None
        with _slide_errors(path, "open slide"):
            try:
                ts = tiffslide.TiffSlide(remote if remote is not None else path)
            except Exception as err:  # tifffile's TiffFileError is no OSError: refused as not a slide
                if remote is not None:
                    remote.close()
                if isinstance(err, OSError):
                    raise
                raise SlideError(f"{path}: not a whole-slide image that tiffslide can read ({err})") from None
        return cls(path, ts, remote)

    @property
    def bytes_fetched(self) -> int | None:
        """Bytes read from a remote slide so far (headers and tiles); None for a local file."""
        return None if self._remote is None else self._remote.bytes_read

    def decodes_directly(self) -> bool:
        """Whether every level is tiled 8-bit RGB in a codec `serves` accepts: then its tiles are
        decoded straight from the file, bit-identical to OpenSlide's on every level whose
        downsample is a whole number (`fractional_levels` are the others)."""
        return self._direct_pages() is not None

    def fractional_levels(self) -> frozenset[int]:
        """The levels whose downsample is not a whole number. There OpenSlide places a read at the
        fractional level position `l0 / downsample` and interpolates, while this backend reads
        whole level pixels (docs/slides.md gives the measured difference)."""
        return frozenset(i for i, ds in enumerate(self.metadata.level_downsamples) if abs(ds - round(ds)) >= 1e-9)

    def serves_exactly(self) -> bool:
        """Whether this file's pixels match OpenSlide's bit for bit on every level."""
        return self.decodes_directly() and not self.fractional_levels()

    def delegate_fractional_levels(self, name: str, opener: Callable[[], SlideBackend]) -> None:
        """Read the `fractional_levels` through the backend `opener` opens (OpenSlide, on the first
        such read), so every level's pixels are that backend's while the whole-number levels, the
        ones a scan reads its patches from, keep this backend's speed. The metadata then names
        both (`tiffslide+openslide`)."""
        if self.fractional_levels():
            self._exact_opener = opener
            self.metadata = replace(self.metadata, backend=f"{SOURCE}+{name}")

    def _delegate(self, level: int) -> SlideBackend | None:
        """The backend that reads `level` instead of this one, opened on first use; None: this one."""
        if self._exact_opener is None or level not in self.fractional_levels():
            return None
        with self._open_lock:
            if self._exact is None:
                self._exact = self._exact_opener()
            return self._exact

    def _direct_pages(self) -> tuple[TiffPage, ...] | None:
        """The level pages when every level is tiled 8-bit RGB in a served codec (`serves`): then
        reads decode the tiles straight from the file, else they go through tiffslide's zarr view."""
        if self._direct is None:
            tif = self._ts.ts_tifffile
            if self._ts.properties.get("tiffslide.series-index", 0) == 0 and serves(tif):
                self._direct = tuple(level.keyframe for level in tif.series[0].levels)
            else:
                self._direct = ()
        return self._direct or None

    def _decode_box(self, page: TiffPage, box: tuple[int, int, int, int]) -> np.ndarray:
        """Level pixels [x0, x1) x [y0, y1) (inside the level), decoded tile by tile with
        tifffile and imagecodecs: one read per tile, no zarr view, no thread pool."""
        x0, y0, x1, y1 = box
        tile_w, tile_h = page.tilewidth, page.tilelength
        cols = -(-page.imagewidth // tile_w)
        out = np.full((y1 - y0, x1 - x0, 3), 255, dtype=np.uint8)
        handle = self._ts.ts_tifffile.filehandle
        for row in range(y0 // tile_h, (y1 - 1) // tile_h + 1):
            for col in range(x0 // tile_w, (x1 - 1) // tile_w + 1):
                index = row * cols + col
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                if not count:
                    continue  # a tile never scanned: white glass, as OpenSlide shows it
                with self._read_lock:
                    handle.seek(offset)
                    data = handle.read(count)
                decoded = page.decode(data, index, jpegtables=page.jpegtables)[0]
                if decoded is None:
                    continue
                tile = decoded[0]
                tx0, ty0 = col * tile_w, row * tile_h
                sx0, sy0 = max(x0, tx0), max(y0, ty0)
                sx1, sy1 = min(x1, tx0 + tile_w), min(y1, ty0 + tile_h)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0, :3]
        return out

    def _level_location(self, level_xy: tuple[int, int], level: int) -> tuple[int, int]:
        """The level-0 location tiffslide maps back onto `level_xy` of `level` (it truncates
        `l0 / downsample`), so a read starts exactly at the level pixel asked for."""
        downsample = self.metadata.level_downsamples[level]
        location = []
        for value in level_xy:
            l0 = math.ceil(value * downsample)
            while int(l0 / downsample) > value:
                l0 -= 1
            while int(l0 / downsample) < value:
                l0 += 1
            location.append(l0)
        return (location[0], location[1])

    def read_region(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> Image.Image:
        delegate = self._delegate(level)
        if delegate is not None:
            return delegate.read_region(l0_xy, level, size_wh)
        return Image.fromarray(self.read_region_rgb(l0_xy, level, size_wh))

    def read_region_rgb(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        delegate = self._delegate(level)
        if delegate is not None:
            return delegate.read_region_rgb(l0_xy, level, size_wh)
        pages = self._direct_pages()

        def read_box(box: tuple[int, int, int, int]) -> np.ndarray:
            x0, y0, x1, y1 = box
            with _slide_errors(self.path, "read pixels"):
                if pages is not None:
                    return self._decode_box(pages[level], box)
                inside: np.ndarray = self._ts.read_region(
                    self._level_location((x0, y0), level), level, (x1 - x0, y1 - y0), as_array=True, padding=False
                )
                return inside

        return read_clipped(self.metadata, l0_xy, level, size_wh, read_box)

    def thumbnail(self, max_wh: tuple[int, int]) -> Image.Image:
        with _slide_errors(self.path, "read pixels"):
            return self._ts.get_thumbnail(max_wh).convert("RGB")

    def deep_zoom(self, tile_px: int, overlap_px: int) -> DeepZoomTiles:
        return grid_tiles(self.metadata, self.read_region, tile_px, overlap_px)

    def close(self) -> None:
        if self._exact is not None:
            self._exact.close()
        self._ts.close()
        if self._remote is not None:
            self._remote.close()
