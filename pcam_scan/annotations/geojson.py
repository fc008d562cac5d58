"""QuPath GeoJSON: read annotations by classification, write lesion contours QuPath imports.

Reading takes a FeatureCollection, a single Feature or a bare list of Features. A feature's
group is its `properties.classification.name` (QuPath >= 0.2; a plain string is accepted too), or
`"Unclassified"` when it has none, and it is read only if the group mapping gives that group a
role. So non-QuPath GeoJSON such as HistomicsTK nuclei (no classification) reads as empty by
default, and fully with `DEFAULT_GROUPS.with_tumour("Unclassified")`.

Polygon and MultiPolygon geometries are read (a z coordinate is dropped); points and lines have
no area and are skipped. A hole of a tumour polygon becomes an exclusion polygon, which is how
Camelyon16 expresses non-tumour inside a lesion; a tumour island inside another polygon's hole is
therefore cleared too. A hole in an exclusion polygon cannot be expressed that way and is refused.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pcam_scan.annotations.files import (
    PathLike,
    about_file,
    parse_json,
    read_annotation_bytes,
    write_atomically,
)
from pcam_scan.annotations.groups import DEFAULT_GROUPS, UNCLASSIFIED, AnnotationGroups
from pcam_scan.annotations.model import Polygon, Role, SlideAnnotations
from pcam_scan.errors import AnnotationError, ConfigError

# QuPath's built-in Tumor class and its colour; exclusions get their own class.
GEOJSON_CANONICAL_GROUPS = ("Tumor", "Exclusion")
CLASS_COLORS: dict[Role, list[int]] = {"tumour": [200, 0, 0], "exclusion": [0, 0, 200]}
HOLE_GROUP = "Exclusion"


def looks_like_geojson(doc: Any) -> bool:
    """A FeatureCollection, a Feature, or a list (of Features)."""
    return isinstance(doc, list) or (isinstance(doc, dict) and doc.get("type") in ("FeatureCollection", "Feature"))


def read_geojson(path: PathLike, groups: AnnotationGroups = DEFAULT_GROUPS) -> SlideAnnotations:
    """Tumour and exclusion polygons of a (QuPath) GeoJSON file, by classification."""
    data = read_annotation_bytes(path)
    with about_file(path):
        return geojson_to_annotations(parse_json(data), groups)


def geojson_to_annotations(doc: Any, groups: AnnotationGroups = DEFAULT_GROUPS) -> SlideAnnotations:
    """`read_geojson` on decoded JSON."""
    tumour: list[Polygon] = []
    exclusions: list[Polygon] = []
    for i, feature in enumerate(_features(doc)):
        properties = feature.get("properties") or {}
        group = _class_name(properties, i)
        role = groups.role(group)
        if role is None:
            continue
        name = str(properties.get("name") or feature.get("id") or f"Feature {i}")
        parts = _polygon_rings(feature.get("geometry"), name)
        for k, rings in enumerate(parts):
            part_name = name if len(parts) == 1 else f"{name} part {k}"
            outer, *holes = rings
            if holes and role == "exclusion":
                raise AnnotationError(f"exclusion {part_name!r} has holes, which cannot be expressed")
            (tumour if role == "tumour" else exclusions).append(
                Polygon(name=part_name, group=group, l0_xy=_ring(outer, part_name))
            )
            exclusions.extend(
                Polygon(f"{part_name} hole {h}", group=HOLE_GROUP, l0_xy=_ring(hole, part_name))
                for h, hole in enumerate(holes)
            )
    return SlideAnnotations(tumour=tuple(tumour), exclusions=tuple(exclusions))


def _features(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, list):
        features = doc
    else:
        raise AnnotationError("not GeoJSON: expected a FeatureCollection, a Feature or a list of Features")
    if not isinstance(features, list):
        raise AnnotationError('GeoJSON FeatureCollection has no "features" list')
    for i, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise AnnotationError(f"GeoJSON item {i} is not a Feature")
    return features


def _class_name(properties: Any, i: int) -> str:
    if not isinstance(properties, dict):
        raise AnnotationError(f"GeoJSON feature {i}: properties must be an object")
    classification = properties.get("classification")
    if classification is None:
        return UNCLASSIFIED
    if isinstance(classification, str):
        return classification
    if isinstance(classification, dict) and isinstance(classification.get("name"), str):
        return str(classification["name"])
    raise AnnotationError(f"GeoJSON feature {i}: classification has no name")


def _polygon_rings(geometry: Any, name: str) -> list[list[Any]]:
    """The polygons of a geometry, each a list of rings (outer first); [] for non-areas."""
    if geometry is None:
        return []
    if not isinstance(geometry, dict):
        raise AnnotationError(f"feature {name!r}: geometry must be an object")
    coordinates = geometry.get("coordinates")
    kind = geometry.get("type")
    parts: list[Any]
    if kind == "Polygon":
        parts = [coordinates]
    elif kind == "MultiPolygon":
        parts = coordinates if isinstance(coordinates, list) else [None]
    else:
        return []
    for rings in parts:
        if not isinstance(rings, list) or not rings:
            raise AnnotationError(f"feature {name!r}: {kind} coordinates must be lists of rings")
    return parts


def _ring(ring: Any, name: str) -> np.ndarray:
    """(N, 2) level-0 x, y of one ring, without GeoJSON's repeated closing vertex."""
    try:
        l0_xy = np.array([position[:2] for position in ring], dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        l0_xy = np.zeros((0, 0))
    if l0_xy.ndim != 2 or l0_xy.shape[1] != 2:
        raise AnnotationError(f"feature {name!r}: a ring is not a list of [x, y] positions")
    if len(l0_xy) > 1 and np.array_equal(l0_xy[0], l0_xy[-1]):
        l0_xy = l0_xy[:-1]
    return l0_xy


def write_geojson(
    annotations: SlideAnnotations,
    path: PathLike,
    measurements: Sequence[Mapping[str, float]] | None = None,
    groups: AnnotationGroups = DEFAULT_GROUPS,
) -> None:
    """Write a QuPath GeoJSON FeatureCollection: one annotation feature per polygon, level-0
    coordinates, closed rings, classification `Tumor` [200, 0, 0] (or the polygon's own tumour
    group) and `Exclusion`; `measurements[i]` (e.g. confidence, area) goes with tumour polygon i.

    For lesion contours, wrap them with `model.contours_to_annotations` first.
    """
    if measurements is not None and len(measurements) != len(annotations.tumour):
        raise ConfigError(f"{len(measurements)} measurement sets for {len(annotations.tumour)} tumour polygons")
    features = []
    for role, polygons in annotations.by_role():
        for i, polygon in enumerate(polygons):
            properties: dict[str, Any] = {
                "objectType": "annotation",
                "name": polygon.name,
                "classification": {
                    "name": groups.group_to_write(polygon.group, role, GEOJSON_CANONICAL_GROUPS),
                    "color": CLASS_COLORS[role],
                },
            }
            if role == "tumour" and measurements is not None:
                properties["measurements"] = _checked_measurements(measurements[i], polygon.name)
            ring = polygon.l0_xy.tolist()
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                    "properties": properties,
                }
            )
    doc = {"type": "FeatureCollection", "features": features}
    write_atomically(path, json.dumps(doc, allow_nan=False).encode("utf-8") + b"\n")


def _checked_measurements(values: Mapping[str, float], name: str) -> dict[str, float]:
    checked: dict[str, float] = {}
    for key, value in values.items():
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (is_number and math.isfinite(value)):
            raise ConfigError(f"measurement {key!r} of {name!r} must be a finite number, got {value!r}")
        checked[str(key)] = float(value)
    return checked
