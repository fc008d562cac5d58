"""ASAP XML (Camelyon16's annotation format): read with defusedxml, write Camelyon16-style.

A file is `<ASAP_Annotations><Annotations><Annotation Name Type PartOfGroup Color><Coordinates>
<Coordinate Order X Y/>...` plus `<AnnotationGroups>`; coordinates are level-0 pixels. Untrusted
XML: a DTD, entity declaration or external reference is refused (AnnotationError), never
expanded or fetched.

Reading keeps `Polygon`, `Spline` (its control points as the polygon, as Camelyon16 mask tools do)
and `Rectangle` annotations of the mapped groups; `Dot`, `PointSet` and `Measurement` carry no
area and are skipped. Annotations of unmapped groups (e.g. `tissue`) are ignored whole.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from pcam_scan.annotations.files import (
    PathLike,
    about_file,
    read_annotation_bytes,
    write_atomically,
)
from pcam_scan.annotations.groups import DEFAULT_GROUPS, AnnotationGroups
from pcam_scan.annotations.model import Polygon, Role, SlideAnnotations
from pcam_scan.errors import AnnotationError

AREA_TYPES = frozenset({"polygon", "spline", "rectangle"})
POINT_TYPES = frozenset({"dot", "pointset", "measurement"})
# Camelyon16 names: `_0` tumour, `_2` exclusion.
ASAP_CANONICAL_GROUPS = ("_0", "_2")
ANNOTATION_COLOR = "#F4FA58"
GROUP_COLORS = {"tumour": "#FF0000", "exclusion": "#0000FF"}


def read_asap_xml(path: PathLike, groups: AnnotationGroups = DEFAULT_GROUPS) -> SlideAnnotations:
    """Tumour and exclusion polygons of an ASAP XML file, by `groups`."""
    data = read_annotation_bytes(path)
    with about_file(path):
        return parse_asap_xml(data, groups)


def parse_asap_xml(data: bytes, groups: AnnotationGroups = DEFAULT_GROUPS) -> SlideAnnotations:
    """`read_asap_xml` on the bytes of a file already read."""
    try:
        root = defused_fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        raise AnnotationError(f"unsafe XML refused ({type(err).__name__})") from None
    except ET.ParseError as err:
        raise AnnotationError(f"not well-formed XML: {err}") from None
    if root.tag != "ASAP_Annotations":
        raise AnnotationError(f"not ASAP XML: root element is <{root.tag}>")
    tumour: list[Polygon] = []
    exclusions: list[Polygon] = []
    for i, element in enumerate(root.iter("Annotation")):
        name = element.get("Name") or f"Annotation {i}"
        group = element.get("PartOfGroup") or "None"
        role = groups.role(group)
        if role is None:
            continue
        kind = (element.get("Type") or "Polygon").casefold()
        if kind in POINT_TYPES:
            continue
        if kind not in AREA_TYPES:
            raise AnnotationError(f"annotation {name!r} has unknown Type {element.get('Type')!r}")
        polygon = Polygon(name=name, group=group, l0_xy=_coordinates(element, name))
        (tumour if role == "tumour" else exclusions).append(polygon)
    return SlideAnnotations(tumour=tuple(tumour), exclusions=tuple(exclusions))


def _coordinates(element: ET.Element, name: str) -> np.ndarray:
    """(N, 2) level-0 x, y of one annotation, sorted by `Order` (a vertex without one keeps
    its place)."""
    rows: list[tuple[float, float, float]] = []
    for j, coord in enumerate(element.iter("Coordinate")):
        try:
            x = float(coord.get("X", "nan"))
            y = float(coord.get("Y", "nan"))
            order = float(coord.get("Order", j))
        except ValueError:
            raise AnnotationError(f"annotation {name!r} vertex {j} is not a number: {dict(coord.attrib)}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise AnnotationError(f"annotation {name!r} vertex {j} lacks a finite X or Y")
        rows.append((order, x, y))
    rows.sort(key=lambda row: row[0])
    return np.array([(x, y) for _, x, y in rows], dtype=np.float64).reshape(-1, 2)


def write_asap_xml(annotations: SlideAnnotations, path: PathLike, groups: AnnotationGroups = DEFAULT_GROUPS) -> None:
    """Write Camelyon16-style ASAP XML that `read_asap_xml(path, groups)` reads back unchanged.

    A polygon keeps its group when `groups` maps it to the same role, else it is written as
    `_0` (tumour) or `_2` (exclusion). For lesion contours, wrap them with
    `model.contours_to_annotations` first.
    """
    root = ET.Element("ASAP_Annotations")
    annotations_el = ET.SubElement(root, "Annotations")
    group_roles: dict[str, Role] = {}
    for role, polygons in annotations.by_role():
        for polygon in polygons:
            group = groups.group_to_write(polygon.group, role, ASAP_CANONICAL_GROUPS)
            group_roles.setdefault(group, role)
            annotation_el = ET.SubElement(
                annotations_el,
                "Annotation",
                Name=polygon.name,
                Type="Polygon",
                PartOfGroup=group,
                Color=ANNOTATION_COLOR,
            )
            coordinates_el = ET.SubElement(annotation_el, "Coordinates")
            for order, (x, y) in enumerate(polygon.l0_xy.tolist()):
                ET.SubElement(coordinates_el, "Coordinate", Order=str(order), X=repr(x), Y=repr(y))
    groups_el = ET.SubElement(root, "AnnotationGroups")
    for group, role in group_roles.items():
        group_el = ET.SubElement(groups_el, "Group", Name=group, PartOfGroup="None", Color=GROUP_COLORS[role])
        ET.SubElement(group_el, "Attributes")
    tree = ET.ElementTree(root)
    ET.indent(tree, space="\t")
    buffer = io.BytesIO()
    tree.write(buffer, encoding="utf-8", xml_declaration=True)
    write_atomically(path, buffer.getvalue() + b"\n")
