"""`pcam-scan render STORE SLIDE_ID --out overlay.png` (or `--all --out DIR`): static heatmap
overlays for reports, and a contact sheet of the batch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.render.style_defaults import DEFAULT_COLORMAP, DEFAULT_THRESHOLD
from pcam_scan.wording import count_noun


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "render",
        help="draw heatmap overlays as PNG (one slide, or --all and a contact sheet)",
        description="Draw a slide's thumbnail with its heatmap, lesion outlines, colour bar and "
        "diagnosis as a PNG. With --all, one PNG per slide of the store in --out DIR and "
        "contact_sheet.png of the batch.",
    )
    parser.add_argument("store", metavar="STORE", help="heatmap store (folder or URL)")
    parser.add_argument("slide_id", metavar="SLIDE_ID", nargs="?", help="slide id (omit with --all)")
    parser.add_argument("--all", action="store_true", help="every slide of the store; --out is a folder")
    parser.add_argument("--out", type=Path, required=True, help="PNG file (one slide) or folder (--all)")
    add_overlay_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def add_overlay_options(parser: argparse.ArgumentParser) -> None:
    """--slides, --threshold and --colormap, shared by `render` and `view`."""
    parser.add_argument(
        "--slides",
        default=None,
        metavar="DIR",
        help="folder (or object store prefix, s3://bucket/slides/) holding the slides when they moved since the scan",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"hide the heatmap below this probability (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--colormap",
        default=DEFAULT_COLORMAP,
        help=f"matplotlib colour map of the heatmap (default {DEFAULT_COLORMAP})",
    )


def run(args: argparse.Namespace) -> int:
    from pcam_scan.errors import ConfigError
    from pcam_scan.outputs import check_output_file, check_output_files, make_output_dir
    from pcam_scan.render.batch import CONTACT_SHEET_NAME, render_slide, render_store
    from pcam_scan.render.heatmap_image import HeatmapStyle
    from pcam_scan.render.slide_files import SlideLocator
    from pcam_scan.store import HeatmapStore, validate_slide_id

    if args.all == (args.slide_id is not None):
        raise ConfigError("give either a SLIDE_ID or --all")
    style = HeatmapStyle(args.threshold, args.colormap)
    reader = HeatmapStore.open(args.store, mode="r")
    locator = SlideLocator(args.slides)
    if not args.all:
        if args.out.suffix.lower() != ".png" or args.out.is_dir():
            raise ConfigError(f"--out {args.out} must be a .png file path")
        check_output_file(args.out, args.overwrite)
        result = render_slide(reader, locator, validate_slide_id(args.slide_id), args.out, style)
        if result.note:
            print(f"pcam-scan render: note: {result.note}", file=sys.stderr)
        print(result.path)
        return 0
    make_output_dir(args.out)
    names = [f"{slide_id}.png" for slide_id in reader.list_slides()] + [CONTACT_SHEET_NAME]
    check_output_files([args.out / name for name in names], args.overwrite)
    results, sheet = render_store(reader, locator, args.out, style)
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            print(f"{result.slide_id}: not rendered: {result.error}")
        else:
            note = f"  (note: {result.note})" if result.note else ""
            print(f"{result.slide_id}: {result.path}{note}")
    print(f"contact sheet: {sheet}" if sheet else "contact sheet: none (no slide could be drawn)")
    print(f"rendered {len(results) - failed} of {count_noun(len(results), 'slide')} into {args.out}")
    return 1 if failed else 0
