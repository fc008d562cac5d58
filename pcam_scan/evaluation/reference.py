"""Camelyon16 `reference.csv`: which slides hold metastases, their histotype and size class.

Layout (the organisers' file, read by their `Permutation_test.py`): no header, one row per slide,
`name,Tumor|Normal,histotype,Macro|Micro|None`, for example `Test_001,Tumor,IDC,Macro`. Case of
the label and size class is ignored; CRLF line ends are fine; blank lines are skipped. A Tumor row
has size Macro, Micro (or ITC, as Camelyon17 uses); a Normal row has size None.

Exclusions: the organisers excluded Test_049 and Test_114 from the evaluation
(`CAMELYON16_EXCLUDED`); the caller names what to exclude, and the result records what was
dropped, so an evaluation says which slides it left out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pcam_scan.evaluation.errors import EvaluationError

CAMELYON16_EXCLUDED: tuple[str, ...] = ("Test_049", "Test_114")
MAX_REFERENCE_BYTES = 16 * 1024 * 1024  # 400 slides take about 20 kB

SizeClass = Literal["macro", "micro", "itc", "none"]
_LABELS = {"tumor": True, "tumour": True, "normal": False}
_SIZES: dict[str, SizeClass] = {"macro": "macro", "micro": "micro", "itc": "itc", "none": "none"}


@dataclass(frozen=True)
class ReferenceEntry:
    """One slide of the reference standard."""

    name: str
    is_tumour: bool
    histotype: str
    size_class: SizeClass


@dataclass(frozen=True)
class Reference:
    """The slides to evaluate, in file order, and the names that were excluded."""

    entries: tuple[ReferenceEntry, ...]
    excluded: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    @property
    def n_tumour(self) -> int:
        return sum(e.is_tumour for e in self.entries)

    def get(self, name: str) -> ReferenceEntry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None


def _parse_row(row: list[str], where: str) -> ReferenceEntry:
    if len(row) != 4:
        raise EvaluationError(
            f"{where}: expected 4 fields name,Tumor|Normal,histotype,Macro|Micro|None, got {len(row)}"
        )
    name, label, histotype, size = (field.strip() for field in row)
    if not name:
        raise EvaluationError(f"{where}: empty slide name")
    if label.lower() not in _LABELS:
        raise EvaluationError(f"{where}: label {label!r} is not Tumor or Normal")
    if size.lower() not in _SIZES:
        raise EvaluationError(f"{where}: size class {size!r} is not Macro, Micro, ITC or None")
    is_tumour = _LABELS[label.lower()]
    size_class = _SIZES[size.lower()]
    if is_tumour == (size_class == "none"):
        raise EvaluationError(
            f"{where}: a {label} slide cannot have size class {size!r} (Tumor takes Macro/Micro/ITC, Normal takes None)"
        )
    return ReferenceEntry(name, is_tumour, histotype, size_class)


def read_reference(path: str | Path, exclude: Iterable[str] = ()) -> Reference:
    """Read a reference.csv, dropping the slides named in `exclude` (absent names are ignored)."""
    source = Path(path)
    try:
        if source.is_file() and source.stat().st_size > MAX_REFERENCE_BYTES:
            raise EvaluationError(
                f"{source}: {source.stat().st_size} bytes is over the limit of {MAX_REFERENCE_BYTES} for a reference"
            )
        with source.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise EvaluationError(f"{source}: no such reference file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise EvaluationError(f"{source}: cannot read the reference: {err}") from None
    excluded_names = set(exclude)
    entries: list[ReferenceEntry] = []
    seen: set[str] = set()
    dropped: list[str] = []
    for line_no, row in enumerate(rows, start=1):
        if not row or all(not field.strip() for field in row):
            continue
        entry = _parse_row(row, f"{source}:{line_no}")
        if entry.name in seen:
            raise EvaluationError(f"{source}:{line_no}: slide {entry.name} appears twice")
        seen.add(entry.name)
        if entry.name in excluded_names:
            dropped.append(entry.name)
        else:
            entries.append(entry)
    if not entries:
        raise EvaluationError(f"{source}: no slides to evaluate")
    return Reference(entries=tuple(entries), excluded=tuple(dropped))
