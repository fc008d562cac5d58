"""`pcam-scan diagnose STORE --out diagnoses.csv`: a diagnosis for every complete slide.

Each complete slide gets a probability of metastasis, a call at the stated threshold and a pN
size category (the default rule, or a learned aggregator with --aggregator); the diagnosis is
stored in the slide's attributes and written as one CSV row with the features it came from.
Slides that are not complete (planned, failed) get a row with their status and message, never
silently dropped. Exit 0 when every slide was diagnosed, 1 when any was not, 2 on a user error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.defaults import DECISION_THRESHOLD
from pcam_scan.errors import StoreError
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from pcam_scan.diagnosis.batch import DiagnosisRow


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def diagnosis_table(rows: Sequence[DiagnosisRow]) -> str:
    """A fixed-width summary: slide, status, probability, call, category, sizes, QC, message."""
    header = (
        f"{'slide':<24} {'status':<9} {'prob':>6} {'call':<14} {'category':<9} {'largest um':>10} {'QC':<14}  message"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        d = row.diagnosis
        qc = row.qc_verdict or "not run"
        if d is None:
            lines.append(
                f"{row.slide_id[:24]:<24} {row.status:<9} {'':>6} {'':<14} {'':<9} {'':>10} {'':<14}  {row.message}"
            )
            continue
        lines.append(
            f"{row.slide_id[:24]:<24} {row.status:<9} {d.probability:>6.3f} {d.call:<14} "
            f"{d.category:<9} {d.largest_lesion_um:>10.0f} {qc:<14}  {row.message}"
        )
    diagnosed = [r.diagnosis for r in rows if r.diagnosis is not None]
    positive = sum(d.is_positive for d in diagnosed)
    negative = sum(d.call == "negative" for d in diagnosed)
    lines.append(
        f"{count_noun(len(rows), 'slide')}: {positive} positive, {negative} negative, "
        f"{len(diagnosed) - positive - negative} not assessable, {len(rows) - len(diagnosed)} without a diagnosis"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.diagnosis.batch import choose_scorer, diagnose_store, save_diagnoses, write_diagnoses_csv
    from pcam_scan.outputs import check_output_file
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import model_calibration
    from pcam_scan.store.run_records import record_run, utc_now
    from pcam_scan.store.schema import SlideAttempt

    started = utc_now()
    scorer = choose_scorer(args.aggregator, args.threshold)
    out: Path = args.out
    check_output_file(out, args.overwrite)
    store = HeatmapStore.open(args.store, mode="r+")
    rows = diagnose_store(store, scorer, save=False)
    if not rows:
        raise StoreError(f"the store {args.store} holds no slides")
    # the CSV first: on a full disk the command stops with the stored diagnoses untouched
    write_diagnoses_csv(out, rows, scorer.feature_settings, args.overwrite)
    save_diagnoses(store, rows)
    print(diagnosis_table(rows))
    print(model_calibration(store))
    print(f"diagnoses: {out} ({scorer.name}, threshold {scorer.threshold:g})", file=sys.stderr)
    code = 0 if all(row.diagnosis is not None for row in rows) else 1
    attempts = [SlideAttempt(r.slide_id, "diagnosed" if r.diagnosis else r.status, r.message) for r in rows]
    record_run(args.store, "diagnose", vars(args), started, code, attempts)
    return code
