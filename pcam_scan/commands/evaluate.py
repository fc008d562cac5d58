"""`pcam-scan evaluate`: Camelyon16 slide AUC and lesion FROC.

The predictions come from one of two places:
- a heatmap store: `pcam-scan evaluate STORE --reference reference.csv --annotations DIR
  [--masks DIR] --out DIR`. Reference names are matched to slide ids ignoring case. A slide's
  probability is the diagnosis stored with it (`pcam-scan diagnose`), or the default rule's for
  a slide without one; with --aggregator every slide is scored by that aggregator. Detections
  are the peaks of each heatmap, and each slide's MPP and size are those its grid recorded
  (--mpp 0.243 replaces the MPP with the official script's constant);
- prediction files in the challenge formats: `--probabilities CSV --detections DIR` (any
  producer), with the slides' MPP from --slides DIR or --mpp.
Ground truth is mask TIFFs (--masks) and/or annotation files (--annotations). Writes under
--out: the challenge artefacts as the official scripts read them, metrics.json (with `inputs`
saying where the predictions came from), roc.png and froc.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.commands.options import add_exclude_option, add_overwrite_option, split_names
from pcam_scan.defaults import (
    BOOTSTRAP_REPLICATES,
    DETECTION_MIN_DISTANCE_CELLS,
    DETECTION_SIGMA_CELLS,
    DETECTION_THRESHOLD,
)
from pcam_scan.errors import ConfigError
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from pcam_scan.evaluation import Reference
    from pcam_scan.evaluation.store_inputs import Predictions

# Options that only mean something for one source of predictions.
STORE_ONLY = ("aggregator", "detection_threshold", "sigma", "min_distance")
FILES_ONLY = ("probabilities", "detections", "slides")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Camelyon16 evaluation: slide ROC AUC (bootstrap CI) and lesion FROC",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", nargs="?", default=None, help="heatmap store (or give prediction files)")
    parser.add_argument("--reference", required=True, type=Path, help="Camelyon16 reference.csv")
    parser.add_argument("--annotations", type=Path, default=None, help="folder of annotation files")
    parser.add_argument("--masks", type=Path, default=None, help="folder of ground-truth mask TIFFs")
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 um/px for every slide (0.243 is the official script's fixed value); "
        "overrides what the slides or the store record",
    )
    add_exclude_option(parser)
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=BOOTSTRAP_REPLICATES,
        help=f"bootstrap replicates for the AUC CI (default {BOOTSTRAP_REPLICATES})",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_overwrite_option(parser)
    store = parser.add_argument_group("predictions from a heatmap store")
    store.add_argument("--aggregator", type=Path, default=None, help="score every slide with this aggregator")
    store.add_argument(
        "--detection-threshold",
        type=float,
        default=None,
        help=f"lowest smoothed probability of a detection (default {DETECTION_THRESHOLD})",
    )
    store.add_argument(
        "--sigma", type=float, default=None, help=f"smoothing sigma in cells (default {DETECTION_SIGMA_CELLS:g})"
    )
    store.add_argument(
        "--min-distance",
        type=float,
        default=None,
        help=f"least distance between two detections, in cells (default {DETECTION_MIN_DISTANCE_CELLS:g})",
    )
    files = parser.add_argument_group("predictions from files")
    files.add_argument("--probabilities", type=Path, help="CSV of name,probability rows")
    files.add_argument("--detections", type=Path, help="folder of <slide>.csv files of Confidence,X,Y rows")
    files.add_argument("--slides", type=Path, default=None, help="folder of the slides, to read each one's MPP")
    parser.set_defaults(func=run)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is not None]


def check_source(args: argparse.Namespace) -> None:
    """One source of predictions, and no option of the other."""
    if args.store is not None:
        if wrong := _given(args, FILES_ONLY):
            raise ConfigError(f"{', '.join(wrong)} apply to prediction files, not to a heatmap store")
        return
    if args.probabilities is None or args.detections is None:
        raise ConfigError("give the predictions: a heatmap STORE, or --probabilities CSV and --detections DIR")
    if wrong := _given(args, STORE_ONLY):
        raise ConfigError(f"{', '.join(wrong)} apply to a heatmap store, not to prediction files")


def read_predictions(args: argparse.Namespace, reference: Reference) -> Predictions:
    """The predictions of the source given: a heatmap store, or prediction files."""
    if args.store is None:
        from pcam_scan.evaluation.file_inputs import file_predictions

        return file_predictions(reference, args.probabilities, args.detections, args.slides, args.mpp)
    from pcam_scan.diagnosis.batch import choose_scorer
    from pcam_scan.evaluation.store_inputs import check_fixed_mpp, detection_settings, predictions_from_store
    from pcam_scan.store import HeatmapStore

    detection = detection_settings(args.detection_threshold, args.sigma, args.min_distance)
    scorer = None if args.aggregator is None else choose_scorer(args.aggregator, None)
    mpp = None if args.mpp is None else check_fixed_mpp(args.mpp)
    store = HeatmapStore.open(args.store, mode="r")
    return predictions_from_store(store, reference, scorer, detection, mpp)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.evaluation import BootstrapSettings, TruthSources, read_reference
    from pcam_scan.evaluation.run import evaluation_outputs, run_evaluation
    from pcam_scan.outputs import check_output_files

    check_source(args)
    reference = read_reference(args.reference, split_names(args.exclude))
    check_output_files(evaluation_outputs(args.out, reference.names), args.overwrite)
    bootstrap = BootstrapSettings(n_replicates=args.bootstrap, seed=args.seed)
    truth = TruthSources(masks_dir=args.masks, annotations_dir=args.annotations)
    predictions = read_predictions(args, reference)
    result, metrics_path = run_evaluation(reference, predictions, truth, bootstrap, args.out)
    auc = result.auc
    print(
        f"slides {len(reference.entries)} ({reference.n_tumour} tumour), excluded "
        f"{', '.join(reference.excluded) or 'none'}"
    )
    print(f"slide AUC {auc.auc:.4f} ({round(auc.level * 100)}% CI {auc.ci_low:.4f}-{auc.ci_high:.4f})")
    print(
        f"FROC score {result.froc.score:.4f} over {count_noun(result.curve.n_lesions, 'lesion')}: "
        + ", ".join(f"{r:g} FP {s:.3f}" for r, s in zip(result.froc.fp_rates, result.froc.sensitivities))
    )
    qc = predictions.inputs.get("qc")
    if isinstance(qc, dict):
        not_assessable = qc.get("not_assessable") or []
        names = f": {', '.join(not_assessable)}" if not_assessable else ""
        print(
            f"QC: {len(not_assessable)} not assessable slide(s){names} "
            "(scored by the probability of their assessable tissue, kept in the AUC)"
        )
    print(f"metrics {metrics_path}")
    return 0
