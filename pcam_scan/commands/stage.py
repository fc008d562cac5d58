"""`pcam-scan stage STORE --patients patients.csv [--out stages.csv]`: a pN stage per patient.

Each slide of the store is one lymph node (patients.csv: `slide_id,patient,node`); its size
category (macro, micro, itc, negative) comes from its diagnosis (the default rule, or
--aggregator), and the patient's stage from Camelyon17's rule: pN0, pN0(i+), pN1mi, pN1, pN2.
A node whose slide failed, is damaged, not scanned or missing is never read as negative: its
patient is `pN?` with the lowest and highest stage it can have (at_least, at_most), unless the
known nodes fix the stage anyway. The store is only read. Writes one row a patient naming the
slides behind the stage. Exit 0 when every patient is staged, 1 when any is pN?, 2 on a user error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcam_scan.commands.diagnose import add_scorer_arguments
from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.defaults import STAGES_FILE
from pcam_scan.wording import count_noun


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stage",
        help="patient pN stages (Camelyon17's rule) from a heatmap store and a patients file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    parser.add_argument("--patients", required=True, type=Path, help="CSV: slide_id,patient,node")
    add_scorer_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path(STAGES_FILE), help=f"CSV to write, one row a patient (default {STAGES_FILE})"
    )
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.diagnosis.batch import stage_store
    from pcam_scan.diagnosis.patient_files import read_patients, write_stages_csv
    from pcam_scan.outputs import check_output_file

    nodes = read_patients(args.patients)
    check_output_file(args.out, args.overwrite)
    stages = stage_store(args.store, nodes, args.aggregator, args.threshold)
    write_stages_csv(args.out, stages, args.overwrite)
    for stage in stages:
        shown = stage.stage if stage.complete else f"{stage.stage} (at least {stage.at_least}, at most {stage.at_most})"
        print(f"{stage.patient:<24} {shown:<40} {';'.join(stage.deciding_slides())}")
    incomplete = [s for s in stages if not s.complete]
    print(
        f"{count_noun(len(stages), 'patient')}: {len(stages) - len(incomplete)} staged, "
        f"{len(incomplete)} incomplete (pN?); stages: {args.out}",
        file=sys.stderr,
    )
    return 1 if incomplete else 0
