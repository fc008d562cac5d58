"""`pcam-scan qc STORE --out qc.csv`: the QC verdict of every slide of a store, one row a slide.

Like HistoQC's results.tsv: the verdict (pass, warn, not assessable), why, and the share of each
slide's tissue per reason (ink, blur, fold, bubble), as the scan stored them. A command of its own
(not a side output of `diagnose`): QC is known as soon as a slide is scanned, needs no scorer, and
a read-only store can be reported on. Exit 0, or 2 on a user error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.errors import StoreError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "qc",
        help="slide quality control verdicts of a heatmap store (qc.csv, one row a slide)",
        description=__doc__,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    parser.add_argument("--out", required=True, type=Path, help="CSV to write, one row a slide")
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.outputs import check_output_file
    from pcam_scan.qc.report import qc_table, store_qc_rows, write_qc_csv
    from pcam_scan.store import HeatmapStore

    out: Path = args.out
    check_output_file(out, args.overwrite)
    store = HeatmapStore.open(args.store)
    rows = store_qc_rows(store)
    if not rows:
        raise StoreError(f"the store {args.store} holds no slides")
    write_qc_csv(out, rows, args.overwrite)
    print(qc_table(rows))
    print(f"qc: {out}", file=sys.stderr)
    return 0
