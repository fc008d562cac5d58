"""The Camelyon16 challenge artefacts: slide probabilities and per-slide detections, as CSV.

Formats, as the challenge asked for them and as the official scripts read them (no header line:
`readCSVContent` parses every line as numbers, and `Permutation_test.py` takes every row as a
slide):
- one slide-level CSV, rows `name,probability` (`SLIDE_PROBABILITIES_CSV`);
- one CSV per slide named `<slide name>.csv`, rows `Confidence,X,Y` with X and Y integer level-0
  pixels (the official reader calls `int()` on them) (`DETECTIONS_DIR`).

Reading is a little more forgiving, for users' own predictions: a header line is skipped when
its numeric fields are not numbers, and X, Y written as decimals are floored to whole pixels.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.froc import DetectionTable
from pcam_scan.lesions import Detection
from pcam_scan.outputs import atomic_output

SLIDE_PROBABILITIES_CSV = "slide_probabilities.csv"
DETECTIONS_DIR = "detections"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [row for row in csv.reader(handle) if row and any(f.strip() for f in row)]
    except FileNotFoundError:
        raise EvaluationError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise EvaluationError(f"{path}: cannot read: {err}") from None


def _write_rows(path: Path, rows: Iterable[Iterable[object]]) -> None:
    with atomic_output(path, overwrite=True) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def write_slide_probabilities(path: str | Path, probabilities: Mapping[str, float]) -> None:
    """Rows `name,probability`, sorted by name, no header."""
    rows = ((name, repr(float(probabilities[name]))) for name in sorted(probabilities))
    _write_rows(Path(path), rows)


def read_slide_probabilities(path: str | Path) -> dict[str, float]:
    """`name,probability` rows (an optional header line is skipped)."""
    source = Path(path)
    out: dict[str, float] = {}
    for line_no, row in enumerate(_rows(source), start=1):
        value = _number(row[1]) if len(row) >= 2 else None
        if value is None and line_no == 1 and len(row) == 2:
            continue  # header
        if len(row) != 2 or value is None:
            raise EvaluationError(f"{source}:{line_no}: expected name,probability, got {','.join(row)!r}")
        name = row[0].strip()
        if name in out:
            raise EvaluationError(f"{source}:{line_no}: slide {name} appears twice")
        out[name] = value
    return out


def write_detections(path: str | Path, detections: DetectionTable) -> None:
    """Rows `Confidence,X,Y` (X, Y integer level-0 pixels), highest confidence first, no header."""
    order = np.argsort(-np.asarray(detections.confidence, dtype=np.float64), kind="stable")
    conf, xs, ys = detections.confidence, detections.l0_x, detections.l0_y
    _write_rows(Path(path), ((repr(float(conf[i])), int(xs[i]), int(ys[i])) for i in order))


def read_detections(path: str | Path) -> DetectionTable:
    """`Confidence,X,Y` rows (an optional header line is skipped; decimal X, Y are floored)."""
    source = Path(path)
    points: list[tuple[float, float, float]] = []
    for line_no, row in enumerate(_rows(source), start=1):
        values = [_number(f) for f in row]
        if len(row) == 3 and line_no == 1 and all(v is None for v in values):
            continue  # header
        if len(row) != 3 or any(v is None for v in values):
            raise EvaluationError(f"{source}:{line_no}: expected Confidence,X,Y numbers, got {','.join(row)!r}")
        confidence, x, y = (float(v) for v in values if v is not None)
        if x < 0 or y < 0:
            raise EvaluationError(f"{source}:{line_no}: negative level-0 coordinate ({x}, {y})")
        points.append((confidence, x, y))
    return DetectionTable.from_points(points)


def read_detection_folder(folder: str | Path, names: Iterable[str]) -> dict[str, DetectionTable]:
    """Each slide's `<name>.csv` from `folder` (file names matched case-insensitively)."""
    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(f"{root}: not a folder of detection CSVs")
    by_key = {p.stem.casefold(): p for p in root.iterdir() if p.suffix.casefold() == ".csv"}
    wanted = list(names)
    missing = [n for n in wanted if n.casefold() not in by_key]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        raise EvaluationError(f"{root}: no detection CSV for {shown}")
    return {n: read_detections(by_key[n.casefold()]) for n in wanted}


def check_slide_name(name: str) -> None:
    """A slide name becomes a file name: no folders, no hidden or empty names."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise EvaluationError(f"slide name {name!r} cannot be used as a file name")


def table_from_detections(detections: Sequence[Detection]) -> DetectionTable:
    """Point detections of `pcam_scan.lesions` as a table (level-0 X, Y floored to pixels)."""
    return DetectionTable.from_points([(d.confidence, d.l0_xy[0], d.l0_xy[1]) for d in detections])


def write_challenge_artefacts(
    out_dir: str | Path,
    probabilities: Mapping[str, float],
    detections: Mapping[str, DetectionTable],
) -> Path:
    """Write the slide CSV and one detection CSV per slide under `out_dir`; returns `out_dir`."""
    root = Path(out_dir)
    for name in detections:
        check_slide_name(name)
    write_slide_probabilities(root / SLIDE_PROBABILITIES_CSV, probabilities)
    for name, table in detections.items():
        write_detections(root / DETECTIONS_DIR / f"{name}.csv", table)
    return root
