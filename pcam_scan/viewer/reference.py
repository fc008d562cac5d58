"""Reference annotations for the viewer's own layer: the file of a slide in `view --annotations`.

A slide's file is found by name, ignoring case: `<name>.xml` (ASAP), `<name>.geojson` or
`<name>.json` (GeoJSON or NCRF), where the name is the slide's store id or its file's stem. The
polygons are served as level-0 rings, tumour and exclusions apart, so the page draws them in a
style of their own, never mixed with the detected outlines.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pcam_scan.annotations import read_annotations

ANNOTATION_SUFFIXES = (".xml", ".geojson", ".json")
MAX_POLYGONS = 2000


def find_annotation_file(folder: Path, names: Iterable[str]) -> Path | None:
    """The first file of `folder` named `<name><suffix>` for one of `names` (case ignored)."""
    wanted = [f"{name}{suffix}".casefold() for name in names for suffix in ANNOTATION_SUFFIXES]
    try:
        by_name = {p.name.casefold(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        return None
    return next((by_name[w] for w in wanted if w in by_name), None)


def reference_overlay(path: Path) -> dict[str, object]:
    """JSON-ready rings of the file's tumour polygons and exclusions (AnnotationError when the
    file is bad)."""
    annotations = read_annotations(path)
    return {
        "file": path.name,
        "tumour_l0_xy": [p.l0_xy.round(1).tolist() for p in annotations.tumour[:MAX_POLYGONS]],
        "exclusions_l0_xy": [p.l0_xy.round(1).tolist() for p in annotations.exclusions[:MAX_POLYGONS]],
    }
