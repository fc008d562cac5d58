"""Lesion annotations: reading (ASAP XML, NCRF JSON, QuPath GeoJSON), writing, rasterising."""

from pcam_scan.annotations.asap import read_asap_xml, write_asap_xml
from pcam_scan.annotations.geojson import read_geojson, write_geojson
from pcam_scan.annotations.groups import DEFAULT_GROUPS, AnnotationGroups
from pcam_scan.annotations.model import Polygon, SlideAnnotations, contours_to_annotations
from pcam_scan.annotations.ncrf import read_ncrf_json
from pcam_scan.annotations.rasterize import rasterize_annotations
from pcam_scan.annotations.read import read_annotations

__all__ = [
    "DEFAULT_GROUPS",
    "AnnotationGroups",
    "Polygon",
    "SlideAnnotations",
    "contours_to_annotations",
    "rasterize_annotations",
    "read_annotations",
    "read_asap_xml",
    "read_geojson",
    "read_ncrf_json",
    "write_asap_xml",
    "write_geojson",
]
