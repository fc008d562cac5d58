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

A slide scanned with QC also gets its QC measurements, named "QC: ..." as QuPath names its own
measurements by what they measure ("Nucleus: Area" of its cell detection), so a measurement map
or a filter finds them together: "QC: focus" (the store's focus score at that level, a mean; left
out where the store has none), one 0/1 measurement per flag ("QC: ink", "QC: blur", "QC: fold",
"QC: bubble", "QC: ink nearby"; a coarse tile's flag is the OR of its cells') and "QC: excluded"
(1 where a flag that pcam-scan leaves out of lesions and diagnoses is set). Every cell with a
probability gets a tile, excluded ones too: the flags say why pcam-scan ignores it, and
P(tumour) is the store's value, which QC never changes. A store without QC exports as before.
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
from pcam_scan.qc.flags import EXCLUDING, INK_NEARBY, REASONS

MEASUREMENT = "P(tumour)"
QC_FOCUS = "QC: focus"
QC_FLAGS: dict[str, int] = {f"QC: {name}": bit for name, bit in {**REASONS, "ink nearby": INK_NEARBY}.items()}
"""One 0/1 measurement per QC flag bit (pcam_scan.qc.flags), by name."""
QC_EXCLUDED = "QC: excluded"


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


QcLevel = tuple[np.ndarray, np.ndarray]
"""One level's QC flags (uint8) and focus scores (float32, NaN where none), as the store reads them."""


def tile_features(grid: CellGrid, prob: np.ndarray, level: int, qc: QcLevel | None = None) -> Iterator[str]:
    """One GeoJSON Feature (as JSON text) per finite cell of `prob`, level `level`, row-major;
    with `qc`, the cell's QC measurements after P(tumour)."""
    rows, cols = np.nonzero(np.isfinite(prob))
    for row, col in zip(rows.tolist(), cols.tolist()):
        x0, y0, x1, y1 = (_number(v) for v in tile_l0_box(grid, level, (row, col)))
        ring = f"[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]"
        measurements = f'"{MEASUREMENT}":{_value(prob[row, col])}'
        if qc is not None:
            measurements += _qc_measurements(int(qc[0][row, col]), float(qc[1][row, col]))
        yield (
            '{"type":"Feature","geometry":{"type":"Polygon","coordinates":[' + ring + "]},"
            '"properties":{"objectType":"tile","isLocked":true,"measurements":{' + measurements + "}}}"
        )


def _qc_measurements(flags: int, focus: float) -> str:
    """`,"QC: focus":f,"QC: ink":0,...` (focus left out when not finite: QuPath 0.4 reads numbers only)."""
    parts = [f'"{QC_FOCUS}":{_value(np.float32(focus))}'] if np.isfinite(focus) else []
    parts += [f'"{name}":{1 if flags & bit else 0}' for name, bit in QC_FLAGS.items()]
    parts.append(f'"{QC_EXCLUDED}":{1 if flags & EXCLUDING else 0}')
    return "," + ",".join(parts)


def _value(value: np.floating) -> str:
    """The float32 as the shortest JSON number that reads back to it."""
    return np.format_float_positional(value, unique=True, trim="-")


def write_qupath_tiles(
    path: Path,
    grid: CellGrid,
    prob: np.ndarray,
    level: int,
    *,
    compress: bool,
    overwrite: bool,
    qc: QcLevel | None = None,
) -> int:
    """Write the FeatureCollection atomically (gzip when `compress`; QC measurements with `qc`);
    returns the tile count."""
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
            for feature in tile_features(grid, prob, level, qc):
                stream.write(("," if count else "") + feature + "\n")
                count += 1
            stream.write("]}\n")
    return count


def _number(value: float) -> str:
    """A coordinate as short JSON: integers without a fraction, others to 1/1000 px."""
    rounded = round(value, 3)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)
