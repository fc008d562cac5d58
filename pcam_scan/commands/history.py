"""`pcam-scan history STORE`: every run recorded in a heatmap store, oldest first.

Each `scan`, `diagnose` and `evaluate` appends a record to the store (`runs/*.json`, see
docs/store.md): the command and its options, package versions, host, user, start and end, and
per slide what the run did and why. This prints one block per run; `--slides` adds a line per
slide, `--json` prints the records as JSON lines. A store older than run records (format
version 1) shows an empty history. Exit 0, or 2 when the store cannot be read.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "history",
        help="the runs recorded in a heatmap store (scan, diagnose, evaluate)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    parser.add_argument("--slides", action="store_true", help="a line per slide of each run")
    parser.add_argument("--json", action="store_true", help="the records as JSON, one a line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.run_records import read_run_records
    from pcam_scan.store.schema import RUN_COMPLETED_OUTCOME

    store = HeatmapStore.open(args.store, mode="r")  # refuses what is not a heatmap store
    records = read_run_records(store.location)
    if not records:
        print(f"{args.store}: no runs recorded")
        return 0
    for record in records:
        if isinstance(record, str):
            print(record)
            continue
        if args.json:
            print(json.dumps(record.to_json(), sort_keys=True))
            continue
        done = len(record.attempts) - record.failed
        print(
            f"{record.started} .. {record.ended}  {record.command:<9} exit {record.exit_code}  "
            f"slides {len(record.attempts)} attempted, {done} completed, {record.failed} failed  "
            f"{record.user}@{record.host} pid {record.pid}"
        )
        if record.outcome != RUN_COMPLETED_OUTCOME:
            print(f"    {record.outcome}: {record.message}")
        shown = record.attempts if args.slides else [a for a in record.attempts if a.message]
        for attempt in shown:
            print(f"    {attempt.slide_id}: {attempt.state}{': ' + attempt.message if attempt.message else ''}")
    return 0
