"""`pcam-scan evaluate`: Camelyon16 slide AUC and lesion FROC of prediction files.

Reads the challenge artefacts (a slide-probability CSV and a folder of per-slide detection CSVs,
whoever produced them), the reference.csv and the ground truth (mask TIFFs and/or annotation
files), and writes under --out: the artefacts as the official scripts read them, metrics.json,
roc.png and froc.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.errors import ConfigError

if TYPE_CHECKING:
    from pcam_scan.evaluation.truth import SlideScale

SLIDE_SUFFIXES = (
    ".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Camelyon16 evaluation: slide ROC AUC (bootstrap CI) and lesion FROC",
        description=__doc__,
    )
    parser.add_argument(
        "--probabilities", required=True, type=Path, help="CSV of name,probability rows"
    )
    parser.add_argument(
        "--detections",
        required=True,
        type=Path,
        help="folder of <slide>.csv files of Confidence,X,Y rows",
    )
    parser.add_argument("--reference", required=True, type=Path, help="Camelyon16 reference.csv")
    parser.add_argument("--annotations", type=Path, default=None, help="folder of annotation files")
    parser.add_argument(
        "--masks", type=Path, default=None, help="folder of ground-truth mask TIFFs"
    )
    parser.add_argument(
        "--slides",
        type=Path,
        default=None,
        help="folder of the slides, to read each one's own MPP and size",
    )
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 um/px for every slide (0.243 is the official script's fixed value); "
        "with --slides, overrides what the slides record",
    )
    parser.add_argument(
        "--exclude",
        default="Test_049,Test_114",
        help="comma-separated slides to leave out (default: the two the Camelyon16 organisers "
        "excluded; '' keeps all)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=2000, help="bootstrap replicates for the AUC CI"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.set_defaults(func=run)


def slide_scales(
    names: list[str], slides_dir: Path | None, mpp_um_px: float | None
) -> tuple[dict[str, SlideScale], str]:
    """Each named slide's MPP (and size), and a word on where the MPP came from."""
    from pcam_scan.evaluation.truth import SlideScale, find_slide_file
    from pcam_scan.slide import open_slide

    if slides_dir is None:
        if mpp_um_px is None:
            raise ConfigError(
                "the evaluation needs each slide's MPP: pass --slides DIR to read it from the "
                "slides, or --mpp 0.243 for the official script's fixed value"
            )
        if not 0.05 <= mpp_um_px <= 50:
            raise ConfigError(f"--mpp {mpp_um_px} um/px is not plausible")
        return {n: SlideScale(mpp_um_px) for n in names}, f"fixed {mpp_um_px} um/px (--mpp)"
    if not slides_dir.is_dir():
        raise ConfigError(f"{slides_dir}: not a folder of slides")
    scales: dict[str, SlideScale] = {}
    for name in names:
        path = find_slide_file(slides_dir, (name,), SLIDE_SUFFIXES)
        if path is None:
            raise ConfigError(f"{slides_dir}: no slide file for {name}")
        with open_slide(path, mpp_um_px) as slide:
            info = slide.info
        scales[name] = SlideScale(info.mpp_um_px, (info.l0_width, info.l0_height))
    source = "each slide's own" if mpp_um_px is None else f"fixed {mpp_um_px} um/px (--mpp)"
    return scales, source


def run(args: argparse.Namespace) -> int:
    from pcam_scan.evaluation import (
        BootstrapSettings,
        TruthSources,
        evaluate,
        load_evaluation_masks,
        read_detection_folder,
        read_reference,
        read_slide_probabilities,
        write_challenge_artefacts,
        write_report,
    )

    exclude = [n.strip() for n in args.exclude.split(",") if n.strip()]
    reference = read_reference(args.reference, exclude)
    bootstrap = BootstrapSettings(n_replicates=args.bootstrap, seed=args.seed)
    tumour_names = [e.name for e in reference.entries if e.is_tumour]
    scales, mpp_source = slide_scales(tumour_names, args.slides, args.mpp)
    probabilities = read_slide_probabilities(args.probabilities)
    detections = read_detection_folder(args.detections, reference.names)
    sources = TruthSources(masks_dir=args.masks, annotations_dir=args.annotations)
    loaded = load_evaluation_masks(tumour_names, sources, scales)
    result = evaluate(
        reference, probabilities, detections, {n: m for n, (m, _) in loaded.items()}, bootstrap
    )
    write_challenge_artefacts(args.out, result.probabilities, detections)
    metrics_path = write_report(result, args.out, mpp_source)
    auc = result.auc
    print(
        f"slides {len(reference.entries)} ({reference.n_tumour} tumour), excluded "
        f"{', '.join(reference.excluded) or 'none'}"
    )
    print(
        f"slide AUC {auc.auc:.4f} ({round(auc.level * 100)}% CI {auc.ci_low:.4f}-{auc.ci_high:.4f})"
    )
    print(
        f"FROC score {result.froc.score:.4f} over {result.curve.n_lesions} lesions: "
        + ", ".join(
            f"{r:g} FP {s:.3f}" for r, s in zip(result.froc.fp_rates, result.froc.sensitivities)
        )
    )
    print(f"metrics {metrics_path}")
    return 0
