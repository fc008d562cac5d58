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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.commands.fit_aggregator import DEFAULT_EXCLUDE, split_names
from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.defaults import (
    BOOTSTRAP_REPLICATES,
    DETECTION_MIN_DISTANCE_CELLS,
    DETECTION_SIGMA_CELLS,
    DETECTION_THRESHOLD,
)
from pcam_scan.errors import ConfigError
from pcam_scan.outputs import check_output_files
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from pcam_scan.evaluation import Reference
    from pcam_scan.evaluation.store_inputs import Predictions
    from pcam_scan.evaluation.truth import SlideScale
    from pcam_scan.lesions import DetectionSettings

# Options that only mean something for one source of predictions.
STORE_ONLY = ("aggregator", "detection_threshold", "sigma", "min_distance")
FILES_ONLY = ("probabilities", "detections", "slides")


def register(subparsers: argparse._SubParsersAction) -> None:
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
    parser.add_argument(
        "--exclude",
        default=DEFAULT_EXCLUDE,
        help="comma-separated slides to leave out (default: the two the Camelyon16 organisers excluded; '' keeps all)",
    )
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


def check_fixed_mpp(mpp_um_px: float) -> float:
    if not 0.05 <= mpp_um_px <= 50:
        raise ConfigError(f"--mpp {mpp_um_px} um/px is not plausible")
    return mpp_um_px


def slide_scales(
    names: list[str], slides_dir: Path | None, mpp_um_px: float | None
) -> tuple[dict[str, SlideScale], str]:
    """Each named slide's MPP (and size) from its file, and a word on where the MPP came from."""
    from pcam_scan.evaluation.store_inputs import fixed_mpp_source
    from pcam_scan.evaluation.truth import SlideScale, find_slide_file
    from pcam_scan.slide import SLIDE_SUFFIXES, open_slide

    if slides_dir is None:
        if mpp_um_px is None:
            raise ConfigError(
                "the evaluation needs each slide's MPP: pass --slides DIR to read it from the "
                "slides, or --mpp 0.243 for the official script's fixed value"
            )
        check_fixed_mpp(mpp_um_px)
        return {n: SlideScale(mpp_um_px) for n in names}, fixed_mpp_source(mpp_um_px)
    if not slides_dir.is_dir():
        raise ConfigError(f"{slides_dir}: not a folder of slides")
    scales: dict[str, SlideScale] = {}
    for name in names:
        path = find_slide_file(slides_dir, (name,), tuple(sorted(SLIDE_SUFFIXES)))
        if path is None:
            raise ConfigError(f"{slides_dir}: no slide file for {name}")
        with open_slide(path, mpp_um_px) as slide:
            info = slide.info
        scales[name] = SlideScale(info.mpp_um_px, (info.l0_width, info.l0_height))
    source = "each slide's own" if mpp_um_px is None else fixed_mpp_source(mpp_um_px)
    return scales, source


def file_predictions(args: argparse.Namespace, reference: Reference) -> Predictions:
    """Challenge CSVs from any producer, and the slides' MPP from their files or --mpp."""
    from pcam_scan.evaluation import read_detection_folder, read_slide_probabilities
    from pcam_scan.evaluation.store_inputs import Predictions

    tumour_names = [e.name for e in reference.entries if e.is_tumour]
    scales, mpp_source = slide_scales(tumour_names, args.slides, args.mpp)
    return Predictions(
        probabilities=read_slide_probabilities(args.probabilities),
        detections=read_detection_folder(args.detections, reference.names),
        scales=scales,
        mpp_source=mpp_source,
        inputs={
            "source": "files",
            "probabilities": str(args.probabilities),
            "detections": str(args.detections),
        },
    )


def detection_settings(args: argparse.Namespace) -> DetectionSettings:
    """The detection options given, the library's defaults for the others."""
    import dataclasses

    from pcam_scan.lesions import DetectionSettings

    chosen = {
        "threshold": args.detection_threshold,
        "sigma_cells": args.sigma,
        "min_distance_cells": args.min_distance,
    }
    return dataclasses.replace(DetectionSettings(), **{k: v for k, v in chosen.items() if v is not None})


def store_predictions(args: argparse.Namespace, reference: Reference) -> Predictions:
    """Probabilities, detections and slide scales of the reference's slides in the store."""
    from pcam_scan.commands.diagnose import choose_scorer
    from pcam_scan.evaluation.store_inputs import predictions_from_store
    from pcam_scan.store import HeatmapStore

    settings = detection_settings(args)
    scorer = None if args.aggregator is None else choose_scorer(args.aggregator, None)
    mpp = None if args.mpp is None else check_fixed_mpp(args.mpp)
    store = HeatmapStore.open(args.store, mode="r")
    return predictions_from_store(store, reference, scorer, settings, mpp)


def evaluation_outputs(out_dir: Path, names: Sequence[str]) -> list[Path]:
    """Every file `evaluate` writes under --out, checked before any work starts."""
    from pcam_scan.evaluation.artefacts import DETECTIONS_DIR, SLIDE_PROBABILITIES_CSV
    from pcam_scan.evaluation.report import FROC_PNG, METRICS_JSON, ROC_PNG

    fixed = [out_dir / name for name in (SLIDE_PROBABILITIES_CSV, METRICS_JSON, ROC_PNG, FROC_PNG)]
    return fixed + [out_dir / DETECTIONS_DIR / f"{name}.csv" for name in names]


def run(args: argparse.Namespace) -> int:
    from pcam_scan.evaluation import (
        BootstrapSettings,
        TruthSources,
        evaluate,
        load_evaluation_masks,
        read_reference,
        write_challenge_artefacts,
        write_report,
    )

    check_source(args)
    reference = read_reference(args.reference, split_names(args.exclude))
    check_output_files(evaluation_outputs(args.out, reference.names), args.overwrite)
    bootstrap = BootstrapSettings(n_replicates=args.bootstrap, seed=args.seed)
    sources = TruthSources(masks_dir=args.masks, annotations_dir=args.annotations)
    if args.store is not None:
        predictions = store_predictions(args, reference)
    else:
        predictions = file_predictions(args, reference)
    tumour_names = [e.name for e in reference.entries if e.is_tumour]
    loaded = load_evaluation_masks(tumour_names, sources, predictions.scales)
    masks = {n: m for n, (m, _) in loaded.items()}
    result = evaluate(reference, predictions.probabilities, predictions.detections, masks, bootstrap)
    write_challenge_artefacts(args.out, result.probabilities, predictions.detections)
    metrics_path = write_report(result, args.out, predictions.mpp_source, predictions.inputs)
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
    print(f"metrics {metrics_path}")
    return 0
