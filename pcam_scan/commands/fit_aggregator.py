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

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.defaults import AGGREGATOR_C, AGGREGATOR_FOLDS, DECISION_THRESHOLD
from pcam_scan.wording import count_noun

DEFAULT_EXCLUDE: str | None = None
"""The --exclude default: None stands for `CAMELYON16_EXCLUDED` (pcam_scan.evaluation.reference),
which `split_names` looks up only when a command runs, since importing pcam_scan.evaluation while
building the parser would slow every `pcam-scan` call by over a second."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit-aggregator",
        help="fit the learned slide aggregator on labelled slides of a heatmap store",
        description=__doc__,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    parser.add_argument("--reference", required=True, type=Path, help="reference.csv labels")
    parser.add_argument("--out", required=True, type=Path, help="aggregator JSON to write")
    parser.add_argument(
        "--exclude",
        default=DEFAULT_EXCLUDE,
        help="comma-separated reference slides to leave out (default: the two the Camelyon16 "
        "organisers excluded; '' keeps all)",
    )
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


def split_names(text: str | None) -> list[str]:
    """`a, b,,c` -> [a, b, c]: the comma-separated slide names of --exclude; None (its default)
    -> the slides the Camelyon16 organisers excluded."""
    if text is None:
        from pcam_scan.evaluation.reference import CAMELYON16_EXCLUDED

        return list(CAMELYON16_EXCLUDED)
    return [name.strip() for name in text.split(",") if name.strip()]


def run(args: argparse.Namespace) -> int:
    from pcam_scan.diagnosis.aggregator import AggregatorError, save_aggregator
    from pcam_scan.diagnosis.features import FeatureSettings, compute_features
    from pcam_scan.diagnosis.fit import FitSettings, fit_aggregator
    from pcam_scan.evaluation import read_reference
    from pcam_scan.outputs import check_output_file
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import is_complete, listed, match_slide_ids, read_heatmap, slide_statuses

    fit_settings = FitSettings(folds=args.folds, c=args.c, seed=args.seed, threshold=args.threshold)
    out: Path = args.out
    check_output_file(out, args.overwrite)
    reference = read_reference(args.reference, split_names(args.exclude))
    store = HeatmapStore.open(args.store, mode="r")
    complete = [slide_id for slide_id, status in slide_statuses(store) if is_complete(status)]
    matched, missing = match_slide_ids(reference.names, complete)
    labelled = [e for e in reference.entries if e.name in matched]
    n_tumour = sum(e.is_tumour for e in labelled)
    n_normal = len(labelled) - n_tumour
    if min(n_tumour, n_normal) < 2:
        absent = f"; not complete in the store: {listed(missing)}" if missing else ""
        raise AggregatorError(
            f"fitting needs at least 2 tumour and 2 normal slides that are labelled in "
            f"{args.reference} and complete in {args.store}; found {n_tumour} tumour and "
            f"{n_normal} normal{absent}"
        )
    features = FeatureSettings()
    rows = []
    for entry in labelled:
        heatmap = read_heatmap(store, matched[entry.name])
        rows.append(compute_features(heatmap.prob, heatmap.tissue, heatmap.grid, features).values)
    report = fit_aggregator(
        rows,
        [e.is_tumour for e in labelled],
        features,
        fit_settings,
        source=f"store {args.store}; reference {args.reference}",
    )
    save_aggregator(report.aggregator, out, overwrite=args.overwrite)
    if missing:
        print(f"not in the store (or not complete), left out: {listed(missing)}")
    print(
        f"fitted on {count_noun(len(labelled), 'slide')} ({n_tumour} tumour, {n_normal} normal); "
        f"{report.folds}-fold CV AUC {report.cv_auc:.4f} "
        f"(folds: {', '.join(f'{a:.3f}' for a in report.fold_aucs)})"
    )
    print(f"aggregator: {out}")
    return 0
