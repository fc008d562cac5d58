"""`pcam-scan export STORE --format geojson|asap|qupath-tiles --out DIR`: lesion outlines for
QuPath or ASAP, or the heatmap itself as QuPath tiles.

Each exported slide gets one file, `DIR/<slide id>.geojson` (QuPath: annotation objects of class
Tumor with measurements area_mm2, diameter_um, max_prob, mean_prob) or `DIR/<slide id>.xml`
(ASAP, Camelyon16 groups `_0` tumour and `_2` exclusion), in level-0 pixel coordinates. An
outline is a heatmap region (cells >= --threshold) traced along its cell edges; cells inside a
region that are not part of it are written as exclusion polygons. A slide without lesions gets
a file without annotations. Without --slides every complete slide is exported and the others
are listed as skipped; a named slide that is missing or not complete is an error.

`qupath-tiles` writes `DIR/<slide id>.tiles.geojson` (`.tiles.geojson.gz` with --gzip): one QuPath
tile object per tissue cell of heatmap pyramid level --level, with the measurement `P(tumour)`
(the store's value at that level: the maximum of the 2^K x 2^K level-0 cells it covers), for
QuPath's measurement maps, and for a slide scanned with QC its focus score and 0/1 flags
(`pcam_scan.annotations.qupath_tiles`). Without --level, the finest level whose grid has at most
QUPATH_TILES_MAX_FEATURES cells (level 2 for a Camelyon16-size slide).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.defaults import QUPATH_TILES_MAX_FEATURES, REGION_THRESHOLD
from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from pcam_scan.store.queries import StoredHeatmap
    from pcam_scan.store.reader import HeatmapReader

# lesion outline format -> (file suffix, tumour group, exclusion group)
FORMATS: dict[str, tuple[str, str, str]] = {
    "geojson": (".geojson", "Tumor", "Exclusion"),
    "asap": (".xml", "_0", "_2"),
}
QUPATH_TILES = "qupath-tiles"
TILES_SUFFIX = ".tiles.geojson"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="lesion outlines of a heatmap store as QuPath GeoJSON or ASAP XML",
        description=__doc__,
    )
    parser.add_argument("store", help="heatmap store: a folder or an fsspec URL")
    parser.add_argument("--format", required=True, choices=sorted([*FORMATS, QUPATH_TILES]), help="file format")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the files into")
    parser.add_argument("--slides", nargs="+", default=None, metavar="ID", help="slide ids (default: all complete)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=REGION_THRESHOLD,
        help=f"region threshold on the heatmap (default {REGION_THRESHOLD})",
    )
    parser.add_argument(
        "--level",
        type=_level,
        default=None,
        metavar="K",
        help="qupath-tiles: heatmap pyramid level (default: the finest with at most "
        f"{QUPATH_TILES_MAX_FEATURES:,} cells)",
    )
    parser.add_argument("--gzip", action="store_true", help="qupath-tiles: write .tiles.geojson.gz")
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def _level(text: str) -> int:
    try:
        level = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--level {text!r} is not a whole number") from None
    if level < 0:
        raise argparse.ArgumentTypeError(f"--level {level} is negative; level 0 is the finest")
    return level


def chosen_slides(complete: dict[str, bool], wanted: list[str] | None) -> tuple[list[str], list[str]]:
    """(slides to export, slides skipped) from `complete` (slide id -> complete?) and the ids
    the user named (matched ignoring case; each must exist and be complete)."""
    from pcam_scan.store.queries import listed, match_slide_ids

    if wanted is None:
        done = [slide_id for slide_id, ok in complete.items() if ok]
        return done, [slide_id for slide_id in complete if slide_id not in done]
    matched, missing = match_slide_ids(wanted, list(complete))
    if missing:
        raise StoreError(f"no slide {listed(missing)} in the store")
    incomplete = [name for name in wanted if not complete[matched[name]]]
    if incomplete:
        raise StoreError(f"slide {listed(incomplete)} is not complete; it has no heatmap to export")
    return list(dict.fromkeys(matched[name] for name in wanted)), []


def run(args: argparse.Namespace) -> int:
    from pcam_scan.annotations import write_asap_xml, write_geojson
    from pcam_scan.diagnosis.contours import (
        contour_measurements,
        contours_as_annotations,
        lesion_contours,
    )
    from pcam_scan.lesions import RegionSettings
    from pcam_scan.outputs import check_output_files, output_folder
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import (
        describe_status,
        is_complete,
        is_damaged,
        read_heatmap,
        slide_statuses,
    )
    from pcam_scan.store.validation import DamagedSlideError

    tiles = args.format == QUPATH_TILES
    if not tiles and (args.level is not None or args.gzip):
        raise ConfigError(f"--level and --gzip apply to --format {QUPATH_TILES}, not {args.format}")
    suffix, tumour_group, exclusion_group = FORMATS.get(args.format, (TILES_SUFFIX, "", ""))
    if tiles and args.gzip:
        suffix += ".gz"
    regions = RegionSettings(args.threshold)
    out: Path = args.out
    store = HeatmapStore.open(args.store, mode="r")
    statuses = dict(slide_statuses(store))
    if not statuses:
        raise StoreError(f"the store {args.store} holds no slides")
    slides, skipped = chosen_slides({s: is_complete(st) for s, st in statuses.items()}, args.slides)
    targets = {slide_id: out / f"{slide_id}{suffix}" for slide_id in slides}
    with output_folder(out):  # taken back if nothing is written into it
        check_output_files(targets.values(), args.overwrite)
        for slide_id in skipped:
            print(f"{slide_id}: skipped, {describe_status(statuses[slide_id])}")
        damaged = 0
        for slide_id, target in targets.items():
            try:
                heatmap = read_heatmap(store, slide_id)
            except DamagedSlideError as err:  # reported, never exported as if sound
                print(f"{slide_id}: not exported, damaged: {err.problem}")
                damaged += 1
                continue
            if tiles:
                print(f"{slide_id}: {export_tiles(store, heatmap, target, args)}")
                continue
            contours = lesion_contours(heatmap.prob, heatmap.grid, regions)
            annotations = contours_as_annotations(contours, tumour_group, exclusion_group)
            if args.format == "geojson":
                write_geojson(annotations, target, contour_measurements(contours))
            else:
                write_asap_xml(annotations, target)
            print(f"{slide_id}: {count_noun(len(contours), 'lesion')} -> {target}")
    return 1 if damaged or any(is_damaged(statuses[s]) for s in skipped) else 0


def export_tiles(store: HeatmapReader, heatmap: StoredHeatmap, target: Path, args: argparse.Namespace) -> str:
    """Write one slide's QuPath tiles; the line that reports it."""
    from pcam_scan.annotations.qupath_tiles import default_tiles_level, write_qupath_tiles

    shapes = store.prob_level_shapes(heatmap.slide_id)
    level = default_tiles_level(shapes, QUPATH_TILES_MAX_FEATURES) if args.level is None else args.level
    if level >= len(shapes):
        raise StoreError(f"slide {heatmap.slide_id!r} has heatmap levels 0-{len(shapes) - 1}, not --level {level}")
    # the store's own values at every level (QC never changes them): an excluded cell keeps its
    # tile, and its QC measurements say why pcam-scan leaves it out
    prob = store.read_prob(heatmap.slide_id, level)
    qc = store.read_qc(heatmap.slide_id, level)
    count = write_qupath_tiles(target, heatmap.grid, prob, level, compress=args.gzip, overwrite=args.overwrite, qc=qc)
    return f"{count_noun(count, 'tile')} of level {level} -> {target}"
