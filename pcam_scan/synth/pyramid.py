"""A pyramidal, tiled, JPEG TIFF written strip by strip, the way OpenSlide's generic-tiff backend
reads it: level 0 in the first directory, then each downsample-2 level in the next directory
with the reduced-resolution bit (NewSubfileType = 1), down to a few hundred pixels.

Memory stays bounded by one strip per level: level 0 arrives as strips from a generator; each
strip is written as tiles and, averaged 2x2, appended to a scratch file that is level 1; once
level 0 is done, level 1 is read back strip by strip the same way, and so on. The scratch files
sit beside the output (not in /tmp, which may be RAM) and go when the slide is written. Resolution
tags are pixels per centimetre, from which OpenSlide reports `openslide.mpp-x/y`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from pcam_scan.synth.files import written_atomically

SMALLEST_LEVEL_PX = 512
UM_PER_CM = 10_000.0
CLASSIC_TIFF_LIMIT_BYTES = 1 << 32
RowsCallback = Callable[[int, int, int], None]


@dataclass(frozen=True)
class PyramidLayout:
    """Level sizes and tiling: `level_wh[k]` is (width, height) of level k, k=0 the full size."""

    level_wh: tuple[tuple[int, int], ...]
    tile_px: int

    @classmethod
    def of(cls, width: int, height: int, tile_px: int) -> PyramidLayout:
        """Halve (floor) while the longer side exceeds `SMALLEST_LEVEL_PX`."""
        sizes = [(width, height)]
        while max(sizes[-1]) > SMALLEST_LEVEL_PX:
            w, h = sizes[-1]
            sizes.append((w // 2, h // 2))
        return cls(tuple(sizes), tile_px)

    @property
    def strip_rows(self) -> int:
        """Rows per strip: whole tile rows, and even so that 2x2 averaging never splits a pair."""
        return 2 * self.tile_px


def downsample_2x(strip: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 block (rounded), dropping an odd last row or column (floor sizes)."""
    h, w = strip.shape[0] // 2 * 2, strip.shape[1] // 2 * 2
    blocks = strip[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.uint16)
    means: np.ndarray = ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)
    return means


class _ScratchLevel:
    """One level's RGB rows on disk, appended in order and read back in strips."""

    def __init__(self, folder: str, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._row_bytes = width * 3
        self._fd = os.open(os.path.join(folder, f"level-{width}x{height}.rgb"), os.O_RDWR | os.O_CREAT)
        self._rows = 0

    def append(self, rows: np.ndarray) -> None:
        rows = rows[: self.height - self._rows, : self.width]
        os.pwrite(self._fd, np.ascontiguousarray(rows).tobytes(), self._rows * self._row_bytes)
        self._rows += rows.shape[0]

    def strips(self, strip_rows: int) -> Iterator[np.ndarray]:
        for row in range(0, self.height, strip_rows):
            count = min(strip_rows, self.height - row)
            data = os.pread(self._fd, count * self._row_bytes, row * self._row_bytes)
            yield np.frombuffer(data, np.uint8).reshape(count, self.width, 3)

    def close(self) -> None:
        os.close(self._fd)


def _tiles(strip: np.ndarray, tile_px: int) -> Iterator[np.ndarray]:
    """The strip's tiles row by row; edge tiles padded by repeating the edge (no black seams in
    the JPEG blocks that straddle the image border)."""
    for r in range(0, strip.shape[0], tile_px):
        for c in range(0, strip.shape[1], tile_px):
            tile = strip[r : r + tile_px, c : c + tile_px]
            pad = ((0, tile_px - tile.shape[0]), (0, tile_px - tile.shape[1]), (0, 0))
            yield np.pad(tile, pad, mode="edge") if any(p[1] for p in pad) else tile


def write_pyramid_tiff(
    path: Path,
    level0_strips: Iterable[np.ndarray],
    layout: PyramidLayout,
    mpp_um_px: float,
    jpeg_quality: int,
    description: str,
    on_rows: RowsCallback | None = None,
) -> None:
    """Write the pyramid to `path` (atomically: a partial file never has the final name).

    `level0_strips` yields (rows, width, 3) uint8 strips of `layout.strip_rows` rows (the last may
    be shorter). `on_rows(level, rows_done, level_rows)` is called after each strip.
    """
    path = Path(path)
    width, height = layout.level_wh[0]
    bigtiff = width * height * 3 > CLASSIC_TIFF_LIMIT_BYTES
    with (
        written_atomically(path) as partial,
        tempfile.TemporaryDirectory(prefix=".synth-", dir=path.parent) as scratch_dir,
    ):
        scratch = [_ScratchLevel(scratch_dir, w, h) for w, h in layout.level_wh[1:]]
        try:
            with tifffile.TiffWriter(partial, bigtiff=bigtiff) as tif:
                source: Iterable[np.ndarray] = level0_strips
                for level, (w, h) in enumerate(layout.level_wh):
                    following = scratch[level] if level < len(scratch) else None
                    px_per_cm = UM_PER_CM / (mpp_um_px * width / w)
                    tif.write(
                        _level_tiles(source, following, layout.tile_px, level, h, on_rows),
                        shape=(h, w, 3),
                        dtype=np.uint8,
                        tile=(layout.tile_px, layout.tile_px),
                        photometric="rgb",
                        compression="jpeg",
                        compressionargs={"level": jpeg_quality},
                        resolution=(px_per_cm, px_per_cm),
                        resolutionunit="CENTIMETER",
                        subfiletype=1 if level else 0,
                        description=description if level == 0 else None,
                        software="pcam-scan",
                        metadata=None,
                    )
                    if following is not None:
                        source = following.strips(layout.strip_rows)
        finally:
            for level_file in scratch:
                level_file.close()


def _level_tiles(
    strips: Iterable[np.ndarray],
    following: _ScratchLevel | None,
    tile_px: int,
    level: int,
    level_rows: int,
    on_rows: RowsCallback | None,
) -> Iterator[np.ndarray]:
    """Tiles of one level, feeding each strip's 2x2 average to the next level on the way.

    The strip is handed on before its tiles are yielded: tifffile stops pulling after the last
    tile, so nothing after the final `yield` would run.
    """
    done = 0
    for strip in strips:
        if following is not None:
            following.append(downsample_2x(strip))
        done += strip.shape[0]
        if on_rows is not None:
            on_rows(level, done, level_rows)
        yield from _tiles(strip, tile_px)
