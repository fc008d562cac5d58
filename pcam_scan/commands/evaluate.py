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

Camelyon17 patients instead: `pcam-scan evaluate STORE --patients patients.csv --stages
reference_stages.csv --out DIR` stages every patient (as `pcam-scan stage`) and scores the stages
with the official metric, quadratic weighted kappa with the stages in pN order, with a bootstrap
CI over patients; writes DIR/stages.csv and DIR/kappa.json. A patient left `pN?` (a node not
assessable) is not scored and is listed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.commands.options import add_bootstrap_options, add_exclude_option, add_overwrite_option, split_names
from pcam_scan.defaults import (
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
    parser.add_argument("--reference", type=Path, default=None, help="Camelyon16 reference.csv (slide AUC and FROC)")
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
    add_bootstrap_options(parser, "AUC CI (and the kappa CI with --stages)")
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
    patients = parser.add_argument_group("Camelyon17 patient stages (instead of --reference)")
    patients.add_argument("--stages", type=Path, default=None, help="reference stages, Camelyon17 layout")
    patients.add_argument("--patients", type=Path, default=None, help="CSV: slide_id,patient,node")
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


def run_stages(args: argparse.Namespace) -> int:
    """`--stages`: every patient staged from the store, scored by weighted kappa."""
    import json

    from pcam_scan.defaults import STAGES_FILE
    from pcam_scan.diagnosis.batch import stage_store
    from pcam_scan.diagnosis.patient_files import read_patients, read_reference_stages, write_stages_csv
    from pcam_scan.evaluation import BootstrapSettings
    from pcam_scan.evaluation.stage_kappa import stage_kappa
    from pcam_scan.outputs import check_output_files, make_output_dir, write_output_text
    from pcam_scan.store.run_records import record_run, utc_now
    from pcam_scan.store.schema import SlideAttempt

    wrong = [
        opt
        for opt, value in (
            ("--reference", args.reference),
            ("--annotations", args.annotations),
            ("--masks", args.masks),
        )
        if value is not None
    ]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} apply to slide evaluation, not to --stages")
    if args.store is None or args.patients is None:
        raise ConfigError("--stages needs a heatmap STORE and --patients FILE")
    reference = read_reference_stages(args.stages)
    nodes = read_patients(args.patients)
    outputs = [args.out / STAGES_FILE, args.out / "kappa.json"]
    check_output_files(outputs, args.overwrite)
    bootstrap = BootstrapSettings(n_replicates=args.bootstrap, seed=args.seed)
    started = utc_now()
    stages = stage_store(args.store, nodes, args.aggregator, None)
    result = stage_kappa(reference, {s.patient: s.stage for s in stages}, bootstrap)
    make_output_dir(args.out)
    write_stages_csv(outputs[0], stages, args.overwrite)
    write_output_text(outputs[1], json.dumps(result.to_json(), indent=2) + "\n", args.overwrite)
    print(
        f"patients {len(reference)}: {len(result.scored)} scored, {len(result.unstaged)} not staged "
        f"({', '.join(result.unstaged) or 'none'})"
    )
    print(
        f"quadratic weighted kappa {result.kappa:.4f} "
        f"({round(result.level * 100)}% CI {result.ci_low:.4f}-{result.ci_high:.4f})"
    )
    print(f"metrics {outputs[1]}")
    attempts = [
        SlideAttempt(n.slide_id, "staged" if n.category else n.status, n.message) for s in stages for n in s.nodes
    ]
    record_run(args.store, "evaluate", vars(args), started, 0, attempts)
    return 0


def run(args: argparse.Namespace) -> int:
    from pcam_scan.defaults import CALIBRATION_BINS
    from pcam_scan.evaluation import BootstrapSettings, TruthSources, read_reference
    from pcam_scan.evaluation.report import slide_calibration
    from pcam_scan.evaluation.run import evaluation_outputs, run_evaluation
    from pcam_scan.outputs import check_output_files
    from pcam_scan.store.run_records import utc_now

    if args.stages is not None:
        return run_stages(args)
    if args.patients is not None:
        raise ConfigError("--patients goes with --stages (Camelyon17 patient evaluation)")
    if args.reference is None:
        raise ConfigError("give --reference reference.csv (slides) or --stages FILE (patients)")
    check_source(args)
    started = utc_now()
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
    for what, report in (("slide", slide_calibration(result)), ("cell", result.cells and result.cells.report)):
        if report:
            print(
                f"{what} calibration: Brier {report.brier.value:.4f}, ECE {report.ece_width.value:.4f} "
                f"({CALIBRATION_BINS} bins; equal-mass {report.ece_mass.value:.4f}) over {count_noun(report.n, what)}"
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
    if args.store is not None:
        from pcam_scan.store.run_records import record_run
        from pcam_scan.store.schema import SlideAttempt

        attempts = [SlideAttempt(name, "evaluated") for name in reference.names]
        record_run(args.store, "evaluate", vars(args), started, 0, attempts)
    return 0
