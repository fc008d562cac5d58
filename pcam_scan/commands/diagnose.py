"""`pcam-scan diagnose STORE --out diagnoses.csv`: a diagnosis for every complete slide.

Each complete slide gets a probability of metastasis, a call at the stated threshold and a pN
size category (the default rule, or a learned aggregator with --aggregator); the diagnosis is
stored in the slide's attributes and written as one CSV row with the features it came from.
Slides that are not complete (planned, failed) get a row with their status and message, never
silently dropped. Exit 0 when every slide was diagnosed, 1 when any was not, 2 on a user error.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.defaults import DECISION_THRESHOLD
from pcam_scan.errors import PcamScanError, StoreError
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from pcam_scan.diagnosis.features import FeatureSettings
    from pcam_scan.diagnosis.record import Diagnosis, Scorer

HEADLINE_COLUMNS = (
    "slide_id",
    "status",
    "probability",
    "call",
    "threshold",
    "category",
    "largest_lesion_um",
    "tumour_area_mm2",
    "method",
    "message",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="slide diagnoses (probability, call, pN size category) from a heatmap store",
        description=__doc__,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    add_scorer_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="CSV to write, one row a slide")
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def add_scorer_arguments(parser: argparse.ArgumentParser) -> None:
    """--aggregator and --threshold, shared by the commands that diagnose slides."""
    parser.add_argument(
        "--aggregator",
        type=Path,
        default=None,
        help="learned aggregator JSON (pcam-scan fit-aggregator); default: the default rule",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold, positive when probability >= T "
        f"(default: the aggregator's own, or {DECISION_THRESHOLD} for the default rule)",
    )


def choose_scorer(aggregator: Path | None, threshold: float | None) -> Scorer:
    """The default rule, or the aggregator read from its file; `threshold` replaces theirs."""
    import dataclasses

    from pcam_scan.diagnosis.aggregator import load_aggregator
    from pcam_scan.diagnosis.rule import DefaultRule

    if aggregator is None:
        return DefaultRule() if threshold is None else DefaultRule(threshold=threshold)
    fitted = load_aggregator(aggregator)
    return fitted if threshold is None else dataclasses.replace(fitted, threshold=threshold)


@dataclass(frozen=True)
class DiagnosisRow:
    """One slide's line of the table: its diagnosis, or why it has none."""

    slide_id: str
    status: str
    message: str = ""
    diagnosis: Diagnosis | None = None


def tumour_area_mm2(features: Mapping[str, float], settings: FeatureSettings) -> float:
    """Area of the cells at or above the lesion threshold (the regions' total area)."""
    from pcam_scan.diagnosis.features import (
        TISSUE_AREA_MM2,
        TUMOUR_TISSUE_FRACTION,
        area_feature_name,
    )

    name = area_feature_name(settings.lesion_threshold)
    if name in features:
        return float(features[name])
    return float(features[TUMOUR_TISSUE_FRACTION] * features[TISSUE_AREA_MM2])


def csv_record(row: DiagnosisRow, settings: FeatureSettings) -> dict[str, object]:
    """The row's CSV fields: the headline columns, then every feature ('' without a diagnosis)."""
    record: dict[str, object] = {name: "" for name in (*HEADLINE_COLUMNS, *settings.names())}
    record.update(slide_id=row.slide_id, status=row.status, message=row.message)
    diagnosis = row.diagnosis
    if diagnosis is not None:
        record.update(
            probability=diagnosis.probability,
            call=diagnosis.call,
            threshold=diagnosis.threshold,
            category=diagnosis.category,
            largest_lesion_um=diagnosis.largest_lesion_um,
            tumour_area_mm2=tumour_area_mm2(diagnosis.features, settings),
            method=diagnosis.method,
        )
        record.update(diagnosis.features)
    return record


def write_diagnoses_csv(
    path: Path, rows: Sequence[DiagnosisRow], settings: FeatureSettings, overwrite: bool = True
) -> None:
    """One header line, one row a slide; written whole, then renamed (pcam_scan.outputs)."""
    from pcam_scan.outputs import atomic_output

    columns = [*HEADLINE_COLUMNS, *settings.names()]
    with atomic_output(path, overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_record(row, settings) for row in rows)


def diagnosis_table(rows: Sequence[DiagnosisRow]) -> str:
    """A fixed-width summary: slide, status, probability, call, category, sizes, message."""
    header = f"{'slide':<24} {'status':<9} {'prob':>6} {'call':<8} {'category':<9} {'largest um':>10}  message"
    lines = [header, "-" * len(header)]
    for row in rows:
        d = row.diagnosis
        if d is None:
            lines.append(f"{row.slide_id[:24]:<24} {row.status:<9} {'':>6} {'':<8} {'':<9} {'':>10}  {row.message}")
            continue
        lines.append(
            f"{row.slide_id[:24]:<24} {row.status:<9} {d.probability:>6.3f} {d.call:<8} "
            f"{d.category:<9} {d.largest_lesion_um:>10.0f}  {row.message}"
        )
    diagnosed = [r.diagnosis for r in rows if r.diagnosis is not None]
    positive = sum(d.is_positive for d in diagnosed)
    lines.append(
        f"{count_noun(len(rows), 'slide')}: {positive} positive, {len(diagnosed) - positive} negative, "
        f"{len(rows) - len(diagnosed)} without a diagnosis"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.diagnosis.record import diagnose_stored_slide
    from pcam_scan.outputs import check_output_file
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import is_complete, slide_statuses
    from pcam_scan.store.validation import DamagedSlideError

    scorer = choose_scorer(args.aggregator, args.threshold)
    out: Path = args.out
    check_output_file(out, args.overwrite)
    store = HeatmapStore.open(args.store, mode="r+")
    statuses = slide_statuses(store)
    if not statuses:
        raise StoreError(f"the store {args.store} holds no slides")
    rows: list[DiagnosisRow] = []
    for slide_id, status in statuses:
        if status is None:
            rows.append(DiagnosisRow(slide_id, "unplanned", "planning never finished"))
            continue
        if not is_complete(status):
            rows.append(DiagnosisRow(slide_id, status.state.value, status.message or ""))
            continue
        try:
            diagnosis = diagnose_stored_slide(store, slide_id, scorer)
        except DamagedSlideError as err:  # never diagnosed as if sound; the others go on
            rows.append(DiagnosisRow(slide_id, "damaged", err.problem))
            continue
        except PcamScanError as err:  # one bad slide is recorded; the others go on
            rows.append(DiagnosisRow(slide_id, "error", str(err)))
            continue
        rows.append(DiagnosisRow(slide_id, status.state.value, diagnosis=diagnosis))
    write_diagnoses_csv(out, rows, scorer.feature_settings, args.overwrite)
    print(diagnosis_table(rows))
    print(f"diagnoses: {out} ({scorer.name}, threshold {scorer.threshold:g})", file=sys.stderr)
    return 0 if all(row.diagnosis is not None for row in rows) else 1
