"""NCRF JSON (Baidu's conversion of the Camelyon16 XMLs): `{"positive": [{"name", "vertices":
[[x, y], ...]}], "negative": [...]}` in level-0 pixels. Positive is tumour; negative is an
exclusion (non-tumour inside or near a lesion), so the key fixes the role and no group mapping
applies."""

from __future__ import annotations

from typing import Any

from pcam_scan.annotations.files import PathLike, about_file, parse_json, read_annotation_bytes
from pcam_scan.annotations.model import Polygon, SlideAnnotations
from pcam_scan.errors import AnnotationError

NCRF_KEYS = ("positive", "negative")


def looks_like_ncrf(doc: Any) -> bool:
    """A JSON object with a `positive` or `negative` key and no GeoJSON `type`."""
    return isinstance(doc, dict) and "type" not in doc and any(key in doc for key in NCRF_KEYS)


def read_ncrf_json(path: PathLike) -> SlideAnnotations:
    """Tumour (positive) and exclusion (negative) polygons of an NCRF JSON file."""
    data = read_annotation_bytes(path)
    with about_file(path):
        return ncrf_to_annotations(parse_json(data))


def ncrf_to_annotations(doc: Any) -> SlideAnnotations:
    """`read_ncrf_json` on decoded JSON."""
    if not looks_like_ncrf(doc):
        raise AnnotationError('not NCRF JSON: expected an object with "positive"/"negative" lists')
    positive, negative = (_polygons(doc, key) for key in NCRF_KEYS)
    return SlideAnnotations(tumour=positive, exclusions=negative)


def _polygons(doc: dict[str, Any], key: str) -> tuple[Polygon, ...]:
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise AnnotationError(f'NCRF "{key}" must be a list, got {type(items).__name__}')
    polygons = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "vertices" not in item:
            raise AnnotationError(f'NCRF "{key}" item {i} has no "vertices"')
        name = str(item.get("name") or f"{key} {i}")
        polygons.append(Polygon(name=name, group=key, l0_xy=item["vertices"]))
    return tuple(polygons)
