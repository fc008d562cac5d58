"""A streaming writer of pyramidal BigTIFF from JPEG tiles that are already encoded.

tifffile looks up its JPEG codec (imagecodecs) even for tiles handed over encoded, and the GPU
machines lack imagecodecs; this writer needs nothing but the standard library. Each level is one
image file directory (IFD) as OpenSlide's generic-tiff backend reads it: tiled, JPEG
(compression 7) in YCbCr with 2x2 chroma subsampling, resolution in pixels per centimetre (from
which OpenSlide reports `openslide.mpp-x/y`), reduced levels marked NewSubfileType = 1.
Tiles go to disk as they come; only each level's offsets and byte counts are held.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

SHORT, LONG, RATIONAL, ASCII, LONG8 = 3, 4, 5, 2, 16
_FORMATS = {SHORT: "H", LONG: "I", LONG8: "Q"}
UM_PER_CM = 10_000.0


@dataclass(frozen=True)
class TiledLevel:
    """One pyramid level: its size, its tiles' JPEG bytes row by row, and its um/px."""

    width: int
    height: int
    tiles: Iterable[bytes]
    mpp_um_px: float
    description: str | None = None


class BigTiffWriter:
    """Appends levels to a little-endian BigTIFF; `close()` ends the IFD chain."""

    def __init__(self, handle: BinaryIO, tile_px: int, software: str = "pcam-scan bench") -> None:
        self.handle, self.tile_px, self.software = handle, tile_px, software
        handle.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))  # BigTIFF; first IFD offset patched
        self._next_pointer_at = 8
        self._levels = 0

    def add_level(self, level: TiledLevel) -> int:
        """Write the level's tiles, then its IFD; returns the number of tiles written."""
        expected = math.ceil(level.width / self.tile_px) * math.ceil(level.height / self.tile_px)
        offsets, counts = [], []
        for tile in level.tiles:
            offsets.append(self.handle.tell())
            counts.append(len(tile))
            self.handle.write(tile)
        if len(offsets) != expected:
            raise ValueError(f"level {level.width} x {level.height} needs {expected} tiles, got {len(offsets)}")
        px_per_cm = Fraction(round(UM_PER_CM / level.mpp_um_px * 1000), 1000)
        entries: list[tuple[int, int, list[int] | bytes]] = [
            (254, LONG, [1 if self._levels else 0]),
            (256, LONG, [level.width]),
            (257, LONG, [level.height]),
            (258, SHORT, [8, 8, 8]),
            (259, SHORT, [7]),  # JPEG
            (262, SHORT, [6]),  # YCbCr
            (277, SHORT, [3]),
            (282, RATIONAL, [px_per_cm.numerator, px_per_cm.denominator]),
            (283, RATIONAL, [px_per_cm.numerator, px_per_cm.denominator]),
            (284, SHORT, [1]),
            (296, SHORT, [3]),  # centimetre
            (305, ASCII, self.software.encode() + b"\0"),
            (322, LONG, [self.tile_px]),
            (323, LONG, [self.tile_px]),
            (324, LONG8, offsets),
            (325, LONG8, counts),
            (530, SHORT, [2, 2]),
            (532, RATIONAL, [0, 1, 255, 1, 128, 1, 255, 1, 128, 1, 255, 1]),
        ]
        if level.description is not None:
            entries.append((270, ASCII, level.description.encode() + b"\0"))
        self._write_ifd(sorted(entries, key=lambda e: e[0]))
        self._levels += 1
        return len(offsets)

    def _write_ifd(self, entries: list[tuple[int, int, list[int] | bytes]]) -> None:
        """Values longer than 8 bytes first, then the IFD that points at them, then link it in."""
        packed = []
        for tag, kind, values in entries:
            if kind == ASCII:
                assert isinstance(values, bytes)
                data, count = values, len(values)
            elif kind == RATIONAL:
                assert isinstance(values, list)
                data, count = struct.pack(f"<{len(values)}I", *values), len(values) // 2
            else:
                assert isinstance(values, list)
                data, count = struct.pack(f"<{len(values)}{_FORMATS[kind]}", *values), len(values)
            if len(data) > 8:
                self._align()
                offset = self.handle.tell()
                self.handle.write(data)
                data = struct.pack("<Q", offset)
            packed.append(struct.pack("<HHQ", tag, kind, count) + data.ljust(8, b"\0"))
        self._align()
        ifd_at = self.handle.tell()
        self.handle.write(struct.pack("<Q", len(packed)) + b"".join(packed))
        next_pointer_at = self.handle.tell()
        self.handle.write(struct.pack("<Q", 0))
        self.handle.seek(self._next_pointer_at)
        self.handle.write(struct.pack("<Q", ifd_at))
        self.handle.seek(0, 2)
        self._next_pointer_at = next_pointer_at

    def _align(self) -> None:
        if self.handle.tell() % 2:
            self.handle.write(b"\0")
