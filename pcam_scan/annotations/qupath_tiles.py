"""The heatmap as QuPath tile objects: one GeoJSON Feature per tissue cell of a pyramid level.

QuPath's conventions, checked in its reader (`qupath-core` `QuPathTypeAdapters.PathObjectTypeAdapter`,
`MeasurementListTypeAdapter`, v0.4.3 to v0.7) and documentation
(`qupath-docs/docs/advanced/exporting_annotations.md`; sources and versions in docs/interop.md):
- a FeatureCollection; coordinates in level-0 pixels, origin at the top-left of the full image;
- `properties.objectType` "tile" (without it every feature would become an annotation);
- `properties.measurements` as a JSON object {"P(tumour)": p} (QuPath >= 0.4 writes this form and
  reads it and the older list form); only finite numbers, so QuPath 0.4 reads them too;
- `properties.isLocked` true, as WSInfer writes its tiles, so a tile is not moved by a stray drag;
- no classification (QuPath refuses a classification object without a colour) and no `id`
  (QuPath gives each object a UUID; leaving it out keeps the file deterministic).
`Measure -> Show measurement maps` then colours the tiles by P(tumour). QuPath reads
`.geojson.gz` too (PathIO.readObjects), a fifth of the size.

A level-k tile covers the 2^k x 2^k level-0 cells below it (clipped at the slide's edge) and
carries the store's level-k value: their maximum (the pyramid's max pooling). NaN cells (no
tissue) get no tile.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from pcam_scan.geometry import CellGrid
from pcam_scan.outputs import atomic_output

MEASUREMENT = "P(tumour)"


def default_tiles_level(level_shapes: Sequence[tuple[int, int]], max_features: int) -> int:
    """The finest level whose whole grid has at most `max_features` cells (so a slide gives at
    most that many tiles whatever its tissue); the coarsest level if none is that small."""
    for level, (rows, cols) in enumerate(level_shapes):
        if rows * cols <= max_features:
            return level
    return len(level_shapes) - 1


def tile_l0_box(grid: CellGrid, level: int, cell_rc: tuple[int, int]) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in level-0 px of level `level`'s cell: its level-0 cells, clipped to the slide."""
    scale = 2**level
    row, col = cell_rc
    last_row = min((row + 1) * scale, grid.rows) - 1
    last_col = min((col + 1) * scale, grid.cols) - 1
    x0, y0, _, _ = grid.cell_l0_box((row * scale, col * scale))
    _, _, x1, y1 = grid.cell_l0_box((last_row, last_col))
    return (x0, y0, min(x1, float(grid.l0_width)), min(y1, float(grid.l0_height)))


def tile_features(grid: CellGrid, prob: np.ndarray, level: int) -> Iterator[str]:
    """One GeoJSON Feature (as JSON text) per finite cell of `prob`, level `level`, row-major."""
    rows, cols = np.nonzero(np.isfinite(prob))
    for row, col in zip(rows.tolist(), cols.tolist()):
        x0, y0, x1, y1 = (_number(v) for v in tile_l0_box(grid, level, (row, col)))
        ring = f"[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]"
        value = np.format_float_positional(prob[row, col], unique=True, trim="-")
        yield (
            '{"type":"Feature","geometry":{"type":"Polygon","coordinates":[' + ring + "]},"
            '"properties":{"objectType":"tile","isLocked":true,"measurements":{"' + MEASUREMENT + '":' + value + "}}}"
        )


def write_qupath_tiles(
    path: Path, grid: CellGrid, prob: np.ndarray, level: int, *, compress: bool, overwrite: bool
) -> int:
    """Write the FeatureCollection atomically (gzip when `compress`); returns the tile count."""
    count = 0
    with atomic_output(path, overwrite) as tmp, open(tmp, "wb") as raw:
        stream: TextIO
        if compress:
            zipped = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)  # mtime 0: the same bytes each time
            stream = io.TextIOWrapper(zipped, encoding="utf-8")
        else:
            stream = io.TextIOWrapper(raw, encoding="utf-8")
        with stream:
            stream.write('{"type":"FeatureCollection","features":[\n')
            for feature in tile_features(grid, prob, level):
                stream.write(("," if count else "") + feature + "\n")
                count += 1
            stream.write("]}\n")
    return count


def _number(value: float) -> str:
    """A coordinate as short JSON: integers without a fraction, others to 1/1000 px."""
    rounded = round(value, 3)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)
