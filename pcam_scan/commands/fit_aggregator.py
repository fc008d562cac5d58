"""`pcam-scan fit-aggregator STORE --reference reference.csv --out agg.json`: learn a slide
diagnosis from labelled heatmaps.

The labelled slides are the complete slides of the store named in the reference (Camelyon16
layout; names matched to slide ids ignoring case, so `Test_001` finds `test_001`). Their heatmap
features train a logistic regression; the cross-validated AUC (out-of-fold probabilities) is
printed and kept in the aggregator file, whose format is documented in
`pcam_scan.diagnosis.aggregator`. Use it with `pcam-scan diagnose --aggregator agg.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcam_scan.commands.options import add_exclude_option, add_overwrite_option, split_names
from pcam_scan.defaults import AGGREGATOR_C, AGGREGATOR_FOLDS, DECISION_THRESHOLD
from pcam_scan.wording import count_noun


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fit-aggregator",
        help="fit the learned slide aggregator on labelled slides of a heatmap store",
        description=__doc__,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    parser.add_argument("--reference", required=True, type=Path, help="reference.csv labels")
    parser.add_argument("--out", required=True, type=Path, help="aggregator JSON to write")
    add_exclude_option(parser)
    parser.add_argument(
        "--folds",
        type=int,
        default=AGGREGATOR_FOLDS,
        help=f"cross-validation folds (at most; default {AGGREGATOR_FOLDS})",
    )
    parser.add_argument(
        "--c", type=float, default=AGGREGATOR_C, help=f"inverse regularisation strength (default {AGGREGATOR_C})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DECISION_THRESHOLD,
        help=f"decision threshold stored with the model (default {DECISION_THRESHOLD})",
    )
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def reliability_path(out: Path) -> Path:
    """The out-of-fold reliability diagram beside the aggregator: `agg.json` -> `agg_reliability.png`."""
    return out.with_name(out.stem + "_reliability.png")


def run(args: argparse.Namespace) -> int:
    from pcam_scan.diagnosis.aggregator import save_aggregator
    from pcam_scan.diagnosis.batch import fit_on_store
    from pcam_scan.diagnosis.fit import FitSettings
    from pcam_scan.evaluation import read_reference
    from pcam_scan.outputs import check_output_file
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import listed

    fit_settings = FitSettings(folds=args.folds, c=args.c, seed=args.seed, threshold=args.threshold)
    out: Path = args.out
    reliability = reliability_path(out)
    check_output_file(out, args.overwrite)
    check_output_file(reliability, args.overwrite)
    reference = read_reference(args.reference, split_names(args.exclude))
    store = HeatmapStore.open(args.store, mode="r")
    labels = {entry.name: entry.is_tumour for entry in reference.entries}
    fit = fit_on_store(store, labels, fit_settings, str(args.store), str(args.reference))
    report = fit.report
    save_aggregator(report.aggregator, out, overwrite=args.overwrite)
    from pcam_scan.evaluation.plots import plot_reliability

    plot_reliability({"out-of-fold": report.calibration}, reliability, "Aggregator, cross-validated slides")
    if fit.missing:
        print(f"not in the store (or not complete), left out: {listed(fit.missing)}")
    print(
        f"fitted on {count_noun(fit.n_tumour + fit.n_normal, 'slide')} ({fit.n_tumour} tumour, "
        f"{fit.n_normal} normal); {report.folds}-fold CV AUC {report.cv_auc:.4f} "
        f"(folds: {', '.join(f'{a:.3f}' for a in report.fold_aucs)})"
    )
    cal = report.calibration
    print(
        f"out-of-fold calibration: Brier {cal.brier.value:.4f}, ECE {cal.ece_width.value:.4f} "
        f"(95% CI {cal.ece_width.ci_low:.4f}-{cal.ece_width.ci_high:.4f}); reliability diagram {reliability}"
    )
    print(f"aggregator: {out}")
    return 0
