"""One entry point for any annotation file: ASAP XML, NCRF JSON or (QuPath) GeoJSON.

The content decides (`<` is XML; a JSON object with `positive`/`negative` is NCRF; a
FeatureCollection, Feature or list is GeoJSON); the extension only settles a file whose content
is too broken to tell, so its error names the format the user meant.
"""

from __future__ import annotations

from pathlib import Path

from pcam_scan.annotations.asap import parse_asap_xml
from pcam_scan.annotations.files import PathLike, about_file, parse_json, read_annotation_bytes
from pcam_scan.annotations.geojson import geojson_to_annotations, looks_like_geojson
from pcam_scan.annotations.groups import DEFAULT_GROUPS, AnnotationGroups
from pcam_scan.annotations.model import SlideAnnotations
from pcam_scan.annotations.ncrf import looks_like_ncrf, ncrf_to_annotations
from pcam_scan.errors import AnnotationError

XML_SUFFIXES = frozenset({".xml"})
JSON_SUFFIXES = frozenset({".json", ".geojson"})
UTF8_BOM = b"\xef\xbb\xbf"


def read_annotations(path: PathLike, groups: AnnotationGroups = DEFAULT_GROUPS) -> SlideAnnotations:
    """Tumour and exclusion polygons of an annotation file of any supported format.

    A missing, empty, malformed, unsafe or unknown file raises AnnotationError naming the file.
    """
    data = read_annotation_bytes(path)
    first = data.removeprefix(UTF8_BOM).lstrip()[:1]
    suffix = Path(path).suffix.casefold()
    with about_file(path):
        if first == b"<" or (suffix in XML_SUFFIXES and first not in (b"{", b"[")):
            return parse_asap_xml(data, groups)
        if first in (b"{", b"[") or suffix in JSON_SUFFIXES:
            doc = parse_json(data.removeprefix(UTF8_BOM))
            if looks_like_ncrf(doc):
                return ncrf_to_annotations(doc)
            if looks_like_geojson(doc):
                return geojson_to_annotations(doc, groups)
            raise AnnotationError(
                "JSON is neither NCRF ({positive, negative}) nor GeoJSON "
                "(FeatureCollection, Feature or list of Features)"
            )
        raise AnnotationError("unknown annotation format: expected ASAP XML, NCRF JSON or GeoJSON")
