"""`pcam-scan synth OUT_DIR`: write a synthetic Camelyon16-like data set (slides, ASAP XML,
level-5 masks, reference.csv, synth.json). Progress goes to stderr, the summary to stdout."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, TextIO

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.synth.spec import STAIN_PRESET_NAMES, SlideSpec, SynthSpec

if TYPE_CHECKING:
    from pcam_scan.synth.dataset import SynthProgress

PROGRESS_EVERY_S = 2.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = SlideSpec()
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic Camelyon16-like slides with lesion annotations",
        description="Write pyramidal JPEG TIFF slides of H&E-like tissue (tumour slides carry "
        "macro-, micro- and ITC-size lesions) with ASAP XML annotations, level-5 masks, a "
        "Camelyon16-style reference.csv and synth.json. Same arguments, same bytes.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (created if missing)")
    parser.add_argument(
        "--tumor",
        "--tumour",
        dest="tumour",
        type=int,
        default=1,
        metavar="N",
        help="tumour slides (default 1)",
    )
    parser.add_argument("--normal", type=int, default=1, metavar="M", help="normal slides (default 1)")
    parser.add_argument(
        "--patients",
        type=int,
        default=0,
        metavar="P",
        help="also Camelyon17-style patients of known pN stage, five node slides each, with "
        "patients.csv and reference_stages.csv (default 0; macro nodes need 16384 x 16384 px)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--width",
        type=int,
        default=defaults.width_px,
        metavar="W",
        help=f"level-0 width in px (default {defaults.width_px})",
    )
    parser.add_argument(
        "--height",
        type=int,
        default=defaults.height_px,
        metavar="H",
        help=f"level-0 height in px (default {defaults.height_px})",
    )
    parser.add_argument(
        "--mpp",
        type=float,
        default=defaults.mpp_um_px,
        help=f"level-0 um/px (default {defaults.mpp_um_px}, Camelyon16's main scanner)",
    )
    parser.add_argument(
        "--stain-preset",
        default=defaults.stain_preset,
        metavar="NAME",
        help=f"the lab's H&E stain: {', '.join(STAIN_PRESET_NAMES)} (default {defaults.stain_preset}; README, Stain)",
    )
    artefacts = parser.add_argument_group(
        "artefacts (QC's ground truth: drawn on every slide, true masks in OUT_DIR/qc/<slide>_qc.npz)"
    )
    artefacts.add_argument("--ink-strokes", type=int, default=0, metavar="N", help="marker strokes per slide")
    artefacts.add_argument(
        "--ink-colours", default="blue,green,black,red", metavar="C,C", help="their colours, in turn"
    )
    artefacts.add_argument("--ink-width-um", type=float, default=80.0, metavar="UM", help="stroke width (default 80)")
    artefacts.add_argument("--blur-discs", type=int, default=0, metavar="N", help="out-of-focus discs per slide")
    artefacts.add_argument(
        "--blur-sigma-um", type=float, default=2.0, metavar="UM", help="their Gaussian blur sigma (default 2)"
    )
    artefacts.add_argument(
        "--blur-radius-um", type=float, default=500.0, metavar="UM", help="their radius (default 500)"
    )
    artefacts.add_argument("--folds", type=int, default=0, metavar="N", help="tissue folds per slide")
    artefacts.add_argument("--bubbles", type=int, default=0, metavar="N", help="air bubbles per slide")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.synth.artefacts import ArtefactSpec
    from pcam_scan.synth.dataset import write_synthetic_dataset

    artefacts = ArtefactSpec(
        ink_strokes=args.ink_strokes,
        ink_colours=tuple(colour.strip() for colour in args.ink_colours.split(",") if colour.strip()),
        ink_width_um=args.ink_width_um,
        blur_discs=args.blur_discs,
        blur_radius_um=args.blur_radius_um,
        blur_sigma_um=args.blur_sigma_um,
        folds=args.folds,
        bubbles=args.bubbles,
    )
    spec = SynthSpec(
        slide=SlideSpec(width_px=args.width, height_px=args.height, mpp_um_px=args.mpp, stain_preset=args.stain_preset),
        tumour_count=args.tumour,
        normal_count=args.normal,
        seed=args.seed,
        patient_count=args.patients,
        artefacts=artefacts if artefacts.any else None,
    )
    reporter = None if args.quiet else ProgressReporter(sys.stderr)
    slides = write_synthetic_dataset(args.out_dir, spec, reporter, overwrite=args.overwrite)
    for slide in slides:
        kinds = ", ".join(f"{lesion.category} {lesion.diameter_um / 1000:.2f} mm" for lesion in slide.lesions)
        print(f"{slide.path}  {slide.plan.category:5s}  {kinds or 'no lesions'}")
    noun = "slide" if len(slides) == 1 else "slides"
    extra = ", patients.csv, reference_stages.csv" if args.patients else ""
    print(f"wrote {len(slides)} {noun}, reference.csv{extra} and synth.json to {args.out_dir}")
    return 0


class ProgressReporter:
    """Turns progress records into a line on `stream` every few seconds: slide, level rows, ETA.

    The ETA counts level-0 rows, where nearly all the time goes (rendering the tissue).
    """

    def __init__(self, stream: TextIO, every_s: float = PROGRESS_EVERY_S) -> None:
        self._stream = stream
        self._every_s = every_s
        self._start = time.monotonic()
        self._last = -float("inf")

    def __call__(self, progress: SynthProgress) -> None:
        now = time.monotonic()
        slide_done = progress.level > 0 or progress.rows_done >= progress.level_rows
        finished = slide_done and progress.level == 0
        if now - self._last < self._every_s and not finished:
            return
        self._last = now
        slide_fraction = 1.0 if progress.level > 0 else progress.rows_done / progress.level_rows
        fraction = (progress.slide_index + slide_fraction) / progress.slide_count
        elapsed = now - self._start
        eta = f"ETA {elapsed * (1 - fraction) / fraction:.0f} s" if fraction > 0 else "ETA ?"
        print(
            f"synth: {progress.slide_name} ({progress.slide_index + 1}/{progress.slide_count}) "
            f"level {progress.level} rows {progress.rows_done}/{progress.level_rows}, "
            f"{100 * fraction:.0f}% done, {eta}",
            file=self._stream,
            flush=True,
        )
