"""A store's QC table: one row per slide, like HistoQC's results.tsv (`pcam-scan qc STORE`).

Reads the QC record each slide's finalize stored (`StoredSlide.qc`); a slide scanned without QC,
or from a store written before QC, says `not run`; a slide that is not complete says its status.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pcam_scan.outputs import atomic_output
from pcam_scan.qc.flags import REASONS
from pcam_scan.qc.verdict import NOT_RUN
from pcam_scan.store import HeatmapReader
from pcam_scan.store.queries import describe_status, is_complete, slide_statuses

COLUMNS = (
    "slide_id",
    "status",
    "qc_verdict",
    "reason",
    "tissue_mm2",
    "excluded_share",
    *(f"{name}_share" for name in REASONS),
)


@dataclass(frozen=True)
class QcRow:
    """One slide's QC: its verdict and shares of tissue (None when QC was not run)."""

    slide_id: str
    status: str
    verdict: str
    reason: str = ""
    tissue_mm2: float | None = None
    excluded_share: float | None = None
    shares: dict[str, float] | None = None


def store_qc_rows(store: HeatmapReader) -> list[QcRow]:
    """A row for every slide of the store, in its order."""
    rows = []
    for slide_id, status in slide_statuses(store):
        if not is_complete(status):
            rows.append(QcRow(slide_id, describe_status(status), "-"))
            continue
        stored = store.stored_slide(slide_id)
        verdict = stored.qc_verdict
        if verdict is None:
            rows.append(QcRow(slide_id, "complete", NOT_RUN, tissue_mm2=stored.tissue_mm2))
            continue
        rows.append(
            QcRow(
                slide_id,
                "complete",
                verdict,
                stored.qc_reason,
                stored.tissue_mm2,
                stored.qc_excluded_share,
                stored.qc_shares,
            )
        )
    return rows


def _fields(row: QcRow) -> dict[str, object]:
    record: dict[str, object] = {name: "" for name in COLUMNS}
    record.update(slide_id=row.slide_id, status=row.status, qc_verdict=row.verdict, reason=row.reason)
    if row.tissue_mm2 is not None:
        record["tissue_mm2"] = round(row.tissue_mm2, 4)
    if row.excluded_share is not None:
        record["excluded_share"] = round(row.excluded_share, 4)
    for name, share in (row.shares or {}).items():
        record[f"{name}_share"] = round(share, 4)
    return record


def write_qc_csv(path: Path, rows: Sequence[QcRow], overwrite: bool = True) -> None:
    """One header line, one row a slide; written whole, then renamed (pcam_scan.outputs)."""
    with atomic_output(path, overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(_fields(row) for row in rows)


def qc_table(rows: Sequence[QcRow]) -> str:
    """A fixed-width summary of the rows, with the count per verdict."""
    names = list(REASONS)
    header = f"{'slide':<24} {'QC':<14} {'excluded':>8} " + " ".join(f"{n:>7}" for n in names) + "  reason"
    lines = [header, "-" * len(header)]
    for row in rows:
        shares = row.shares or {}
        excluded = "" if row.excluded_share is None else f"{row.excluded_share:.1%}"
        cells = " ".join(f"{shares[n]:>7.1%}" if n in shares else f"{'':>7}" for n in names)
        shown = row.verdict if row.status == "complete" else row.status
        lines.append(f"{row.slide_id[:24]:<24} {shown[:14]:<14} {excluded:>8} {cells}  {row.reason}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
    lines.append(", ".join(f"{count} {verdict}" for verdict, count in counts.items()))
    return "\n".join(lines)
