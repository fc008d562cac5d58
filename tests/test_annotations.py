"""Annotation I/O and rasterisation, on the real Camelyon16/17, NCRF and GeoJSON files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from pcam_scan.annotations import (
    DEFAULT_GROUPS,
    AnnotationGroups,
    Polygon,
    SlideAnnotations,
    contours_to_annotations,
    rasterize_annotations,
    read_annotations,
    read_asap_xml,
    read_geojson,
    read_ncrf_json,
    write_asap_xml,
    write_geojson,
)
from pcam_scan.errors import AnnotationError, ConfigError


def _square(x0: float, y0: float, x1: float, y1: float, name: str = "sq", group: str = "_0") -> Polygon:
    return Polygon(name=name, group=group, l0_xy=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))


def _assert_same_polygons(got: tuple[Polygon, ...], want: tuple[Polygon, ...]) -> None:
    assert [(p.name, p.group) for p in got] == [(p.name, p.group) for p in want]
    for p, q in zip(got, want, strict=True):
        np.testing.assert_array_equal(p.l0_xy, q.l0_xy)


def _mask_extent(annotations: SlideAnnotations, l0_downsample: float) -> tuple[int, int]:
    l0_xy = np.concatenate([p.l0_xy for p in annotations.tumour])
    return int(l0_xy[:, 1].max() // l0_downsample) + 2, int(l0_xy[:, 0].max() // l0_downsample) + 2


# --- real files -----------------------------------------------------------------------------


def test_tumor_036_exclusions_are_not_tumour(realdata: Path) -> None:
    annotations = read_asap_xml(realdata / "annotations/tumor_036_markowetzlab.xml")
    assert len(annotations.tumour) == 103 and len(annotations.exclusions) == 2
    assert {p.group for p in annotations.tumour} == {"metastasis"}
    assert {p.group for p in annotations.exclusions} == {"negative"}
    polygons = annotations.tumour + annotations.exclusions
    assert sum(len(p.l0_xy) for p in polygons) == 40483  # the README's vertex count

    level5 = 32.0
    shape = _mask_extent(annotations, level5)
    mask = rasterize_annotations(annotations, level5, shape)
    tumour_only = rasterize_annotations(SlideAnnotations(tumour=annotations.tumour), level5, shape)
    excluded = rasterize_annotations(SlideAnnotations(tumour=annotations.exclusions), level5, shape)
    assert (tumour_only & excluded).sum() > 0  # the exclusions really lie inside lesions
    assert not (mask & excluded).any()
    np.testing.assert_array_equal(mask, tumour_only & ~excluded)


def test_tumor_107_ncrf_negatives_are_exclusions(realdata: Path) -> None:
    annotations = read_ncrf_json(realdata / "ncrf/Tumor_107.json")
    assert [p.name for p in annotations.tumour] == ["Tumor1", "Tumor2"]
    assert sum(len(p.l0_xy) for p in annotations.tumour) == 308
    assert len(annotations.exclusions) == 3
    assert sum(len(p.l0_xy) for p in annotations.exclusions) == 185
    np.testing.assert_array_equal(annotations.tumour[0].l0_xy[0], [25782, 61238])

    shape = _mask_extent(annotations, 16.0)
    mask = rasterize_annotations(annotations, 16.0, shape)
    excluded = rasterize_annotations(SlideAnnotations(tumour=annotations.exclusions), 16.0, shape)
    assert excluded.any() and not (mask & excluded).any()


def test_ncrf_first_vertex_matches_the_camelyon16_xml(realdata: Path) -> None:
    annotations = read_annotations(realdata / "ncrf/Tumor_001.json")
    assert len(annotations.tumour) == 2 and not annotations.exclusions
    np.testing.assert_array_equal(annotations.tumour[0].l0_xy[0], [71924, 131761])


def test_patient_004_node_4_has_three_tumour_polygons(realdata: Path) -> None:
    annotations = read_annotations(realdata / "annotations/patient_004_node_4.xml")
    assert [p.name for p in annotations.tumour] == ["Annotation 0", "Annotation 1", "Annotation 2"]
    assert {p.group for p in annotations.tumour} == {"Tumor"}
    assert sum(len(p.l0_xy) for p in annotations.tumour) == 35
    np.testing.assert_allclose(annotations.tumour[0].l0_xy[0], [12711.2998, 88778.1016])
    l0_xy = np.concatenate([p.l0_xy for p in annotations.tumour])
    np.testing.assert_allclose(l0_xy.min(axis=0), [10626.2002, 75345.3984])
    np.testing.assert_allclose(l0_xy.max(axis=0), [13482.7998, 89160.6016])


def test_tissue_outlines_are_ignored_unless_mapped(realdata: Path) -> None:
    path = realdata / "annotations/normal_042_tissue_markowetzlab.xml"
    annotations = read_annotations(path)
    assert annotations.is_empty and not annotations.exclusions
    tissue = read_annotations(path, AnnotationGroups(tumour=frozenset({"TISSUE"})))
    assert len(tissue.tumour) == 5 and {p.group for p in tissue.tumour} == {"tissue"}


def test_qupath_example_classes_need_a_mapping(realdata: Path) -> None:
    path = realdata / "annotations/markowetzlab_qupath_example.geojson"
    assert read_annotations(path) == SlideAnnotations()
    groups = DEFAULT_GROUPS.with_tumour("artifact").with_exclusion("Unsure")
    annotations = read_geojson(path, groups)
    (artifact,) = annotations.tumour
    (unsure,) = annotations.exclusions
    assert (artifact.group, unsure.group) == ("artifact", "unsure")
    # GeoJSON's repeated closing vertex is dropped: the 400 px square keeps 4 corners.
    np.testing.assert_array_equal(artifact.l0_xy, [[42800, 2800], [43200, 2800], [43200, 3200], [42800, 3200]])
    assert len(unsure.l0_xy) == 4
    # The square [42800, 43200) at 16 l0 px per px: columns 2675..2699 and rows 175..199.
    mask = rasterize_annotations(SlideAnnotations(tumour=(artifact,)), 16.0, (300, 2800))
    assert mask.sum() == 25 * 25
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (175, 199, 2675, 2699)


def test_non_qupath_geojson_reads_only_when_unclassified_is_mapped(realdata: Path) -> None:
    path = realdata / "annotations/large_image_sample_nuclei.geojson"
    assert read_annotations(path).is_empty
    annotations = read_annotations(path, DEFAULT_GROUPS.with_tumour("unclassified"))
    assert len(annotations.tumour) == 10 and not annotations.exclusions
    first = annotations.tumour[0].l0_xy
    assert first.shape[1] == 2  # the z = 0 coordinate is dropped
    np.testing.assert_array_equal(first[0], [8441, 18758])
    assert not np.array_equal(first[0], first[-1])


# --- group mapping --------------------------------------------------------------------------


def test_group_mapping_is_case_insensitive_and_overridable(realdata: Path) -> None:
    assert DEFAULT_GROUPS.role("TUMOR") == "tumour"
    assert DEFAULT_GROUPS.role(" Metastases ") == "tumour"
    assert DEFAULT_GROUPS.role("_2") == "exclusion"
    assert DEFAULT_GROUPS.role("tissue") is None
    swapped = AnnotationGroups(tumour=frozenset({"negative"}), exclusion=frozenset({"metastasis"}))
    annotations = read_asap_xml(realdata / "annotations/tumor_036_markowetzlab.xml", swapped)
    assert len(annotations.tumour) == 2 and len(annotations.exclusions) == 103


def test_group_mapping_refuses_a_name_in_both_roles() -> None:
    with pytest.raises(ConfigError, match="both tumour and exclusion"):
        AnnotationGroups(tumour=frozenset({"Tumor"}), exclusion=frozenset({"tumor"}))
    with pytest.raises(ConfigError, match="set of non-empty names"):
        AnnotationGroups(tumour="Tumor")  # type: ignore[arg-type]


# --- writing and round trips ----------------------------------------------------------------


def test_asap_round_trip_keeps_every_polygon(realdata: Path, tmp_path: Path) -> None:
    original = read_asap_xml(realdata / "annotations/tumor_036_markowetzlab.xml")
    out = tmp_path / "tumor_036.xml"
    write_asap_xml(original, out)
    again = read_asap_xml(out)
    _assert_same_polygons(again.tumour, original.tumour)
    _assert_same_polygons(again.exclusions, original.exclusions)
    text = out.read_text()
    assert 'Type="Polygon" PartOfGroup="metastasis"' in text
    assert '<Group Name="negative"' in text


def test_asap_writer_gives_unmapped_groups_camelyon16_names(realdata: Path, tmp_path: Path) -> None:
    original = read_ncrf_json(realdata / "ncrf/Tumor_107.json")  # groups "positive"/"negative"
    out = tmp_path / "Tumor_107.xml"
    write_asap_xml(original, out)
    again = read_annotations(out)
    assert {p.group for p in again.tumour} == {"_0"}  # "positive" is no tumour group name
    assert {p.group for p in again.exclusions} == {"negative"}  # already an exclusion name
    got = again.tumour + again.exclusions
    want = original.tumour + original.exclusions
    for got_polygon, want_polygon in zip(got, want, strict=True):
        np.testing.assert_array_equal(got_polygon.l0_xy, want_polygon.l0_xy)


def test_lesion_contours_export_to_asap_and_geojson(tmp_path: Path) -> None:
    contours = [
        np.array([[10.0, 10.0], [90.5, 10.0], [50.0, 70.25]]),
        np.array([[200, 200], [260, 200], [260, 240], [200, 240]]),
    ]
    lesions = contours_to_annotations(contours)
    write_asap_xml(lesions, tmp_path / "lesions.xml")
    measurements = [{"confidence": 0.93, "area_mm2": 0.012}, {"confidence": 0.5, "area_mm2": 0.1}]
    write_geojson(lesions, tmp_path / "lesions.geojson", measurements=measurements)

    for path in (tmp_path / "lesions.xml", tmp_path / "lesions.geojson"):
        again = read_annotations(path)
        assert [p.name for p in again.tumour] == ["Lesion 0", "Lesion 1"]
        for got, want in zip(again.tumour, contours, strict=True):
            np.testing.assert_array_equal(got.l0_xy, want)

    doc = json.loads((tmp_path / "lesions.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    first = doc["features"][0]
    assert first["properties"]["objectType"] == "annotation"
    assert first["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert first["properties"]["measurements"] == {"confidence": 0.93, "area_mm2": 0.012}
    ring = first["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] == [10.0, 10.0] and len(ring) == 4


def test_geojson_round_trip_keeps_tumour_and_exclusions(realdata: Path, tmp_path: Path) -> None:
    original = read_asap_xml(realdata / "annotations/tumor_036_markowetzlab.xml")
    write_geojson(original, tmp_path / "tumor_036.geojson")
    again = read_geojson(tmp_path / "tumor_036.geojson")
    _assert_same_polygons(again.tumour, original.tumour)
    _assert_same_polygons(again.exclusions, original.exclusions)


def test_geojson_writer_refuses_bad_measurements(tmp_path: Path) -> None:
    lesions = contours_to_annotations([np.array([[0, 0], [5, 0], [0, 5]])])
    with pytest.raises(ConfigError, match="1 tumour polygons"):
        write_geojson(lesions, tmp_path / "a.geojson", measurements=[])
    with pytest.raises(ConfigError, match="finite number"):
        write_geojson(lesions, tmp_path / "a.geojson", measurements=[{"confidence": float("nan")}])
    assert not list(tmp_path.iterdir())


# --- unsafe and broken files ----------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ASAP_Annotations><Annotations>
<Annotation Name="&lol4;" Type="Polygon" PartOfGroup="_0"><Coordinates>
<Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="9" Y="0"/>
<Coordinate Order="2" X="0" Y="9"/>
</Coordinates></Annotation></Annotations></ASAP_Annotations>
"""


def test_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.xml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(AnnotationError, match="unsafe XML refused"):
        read_annotations(path)


def test_external_entity_is_refused_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    path = tmp_path / "xxe.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        '<ASAP_Annotations><Annotations><Annotation Name="&xxe;" PartOfGroup="_0"/>'
        "</Annotations></ASAP_Annotations>\n"
    )
    with pytest.raises(AnnotationError, match="unsafe XML refused") as caught:
        read_asap_xml(path)
    assert "TOP-SECRET-VALUE" not in str(caught.value)


def test_a_bare_doctype_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dtd.xml"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE ASAP_Annotations>\n<ASAP_Annotations/>\n')
    with pytest.raises(AnnotationError, match="DTDForbidden"):
        read_asap_xml(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.xml", "", "is empty"),
        ("blank.json", " \n\t", "is empty"),
        ("broken.xml", "<ASAP_Annotations><Annotations>", "not well-formed XML"),
        ("broken.geojson", '{"type": "FeatureCollection", ', "not valid JSON"),
        ("other.xml", "<svg/>", "not ASAP XML: root element is <svg>"),
        ("other.json", '{"shapes": []}', "neither NCRF"),
        ("notes.txt", "tumour somewhere", "unknown annotation format"),
        ("geometry.geojson", '{"type": "Polygon", "coordinates": []}', "neither NCRF"),
        ("item.geojson", '[{"type": "Polygon"}]', "item 0 is not a Feature"),
        ("ncrf.json", '{"positive": [{"name": "a"}]}', 'item 0 has no "vertices"'),
        ("ncrf2.json", '{"positive": [{"vertices": [[0, 0], [1, 1]]}]}', "has 2 vertices"),
        (
            "bad_x.xml",
            '<ASAP_Annotations><Annotations><Annotation Name="A" PartOfGroup="Tumor"><Coordinates>'
            '<Coordinate Order="0" X="1,5" Y="2"/></Coordinates></Annotation></Annotations>'
            "</ASAP_Annotations>",
            "annotation 'A' vertex 0 is not a number",
        ),
        (
            "dot.xml",
            '<ASAP_Annotations><Annotations><Annotation Name="A" Type="Ellipse" PartOfGroup="_1"/>'
            "</Annotations></ASAP_Annotations>",
            "unknown Type 'Ellipse'",
        ),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as caught:
        read_annotations(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations(tmp_path / "nope.xml")
    with pytest.raises(AnnotationError, match="not a file"):
        read_annotations(tmp_path)


def test_content_decides_over_extension(realdata: Path, tmp_path: Path) -> None:
    ncrf_as_txt = tmp_path / "Tumor_081"
    ncrf_as_txt.write_bytes((realdata / "ncrf/Tumor_081.json").read_bytes())
    assert len(read_annotations(ncrf_as_txt).tumour) == 1
    geojson_as_json = tmp_path / "qupath.json"
    qupath = realdata / "annotations/markowetzlab_qupath_example.geojson"
    geojson_as_json.write_bytes(qupath.read_bytes())
    assert len(read_annotations(geojson_as_json, DEFAULT_GROUPS.with_tumour("unsure")).tumour) == 1


def test_polygon_checks_its_vertices() -> None:
    with pytest.raises(AnnotationError, match="non-finite"):
        Polygon("p", "_0", np.array([[0, 0], [1, np.nan], [0, 1]]))
    with pytest.raises(AnnotationError, match=r"\(N, 2\)"):
        Polygon("p", "_0", np.zeros((3, 3)))
    polygon = Polygon("p", "_0", np.array([[0, 0], [4, 0], [0, 4]]))
    assert polygon.l0_xy.dtype == np.float64 and not polygon.l0_xy.flags.writeable


# --- rasterisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("l0_downsample", "expected_side_px"),
    [
        (1.0, 200),  # centres 100.5 .. 299.5
        (4.0, 50),  # centres (c + 0.5) * 4 in [100, 300): c = 25 .. 74
        (3.0, 67),  # c + 0.5 in [33.33, 100): c = 33 .. 99
    ],
)
def test_square_covers_the_pixels_whose_centres_it_holds(l0_downsample: float, expected_side_px: int) -> None:
    square = SlideAnnotations(tumour=(_square(100, 100, 300, 300),))
    mask = rasterize_annotations(square, l0_downsample, (320, 320))
    assert mask.sum() == expected_side_px**2


def test_unaligned_square_and_origin() -> None:
    # Centres (c + 0.5) * 4 = 4c + 2 in [10.3, 50.7): c = 3 .. 12, ten pixels a side.
    square = SlideAnnotations(tumour=(_square(10.3, 10.3, 50.7, 50.7),))
    mask = rasterize_annotations(square, 4.0, (20, 20))
    rows, cols = np.nonzero(mask)
    assert mask.sum() == 100 and (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 12, 3, 12)
    # The same square seen from a region whose top-left is level-0 (8, 8): shifted by 2 px.
    shifted = rasterize_annotations(square, 4.0, (20, 20), l0_origin_xy=(8.0, 8.0))
    np.testing.assert_array_equal(shifted[1:13, 1:13], mask[3:15, 3:15])
    assert shifted.sum() == 100


def test_shared_edges_claim_each_pixel_once_and_overlaps_unite() -> None:
    left, right = _square(0, 0, 40, 40, "l"), _square(40, 0, 80, 40, "r")
    both = rasterize_annotations(SlideAnnotations(tumour=(left, right)), 4.0, (10, 20))
    assert both.sum() == 10 * 20
    overlapping = (_square(0, 0, 40, 40), _square(20, 0, 60, 40))
    union = rasterize_annotations(SlideAnnotations(tumour=overlapping), 4.0, (10, 20))
    assert union.sum() == 10 * 15  # a union, not an even-odd cancellation


def test_random_polygons_match_an_independent_point_test() -> None:
    rng = np.random.default_rng(7)
    d = 3.7
    rows, cols = np.mgrid[0:90, 0:110]
    centres = np.column_stack([(cols.ravel() + 0.5) * d, (rows.ravel() + 0.5) * d])
    for _ in range(4):
        l0_xy = rng.uniform(0, 400, size=(25, 2))  # self-intersecting: even-odd rule
        polygon = Polygon("r", "_0", l0_xy)
        mask = rasterize_annotations(SlideAnnotations(tumour=(polygon,)), d, (90, 110))
        expected = MplPath(l0_xy).contains_points(centres).reshape(90, 110)
        np.testing.assert_array_equal(mask, expected)


def test_geojson_holes_and_exclusions_are_cleared(tmp_path: Path) -> None:
    outer = [[0, 0], [400, 0], [400, 400], [0, 400], [0, 0]]
    hole = [[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]
    island = [[[500, 0], [600, 0], [600, 100], [500, 100], [500, 0]]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "MultiPolygon", "coordinates": [[outer, hole], island]},
        "properties": {
            "objectType": "annotation",
            "name": "L",
            "classification": {"name": "Tumor"},
        },
    }
    path = tmp_path / "holes.geojson"
    path.write_text(json.dumps(feature))
    annotations = read_annotations(path)
    assert [p.name for p in annotations.tumour] == ["L part 0", "L part 1"]
    assert [p.name for p in annotations.exclusions] == ["L part 0 hole 0"]
    mask = rasterize_annotations(annotations, 10.0, (40, 60))
    assert mask.sum() == 40 * 40 - 20 * 20 + 10 * 10
    assert not mask[10:30, 10:30].any()


def test_exclusion_with_a_hole_is_refused(tmp_path: Path) -> None:
    ring = [[0, 0], [9, 0], [9, 9], [0, 9], [0, 0]]
    hole = [[3, 3], [6, 3], [6, 6], [3, 6], [3, 3]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring, hole]},
        "properties": {"classification": {"name": "negative"}},
    }
    path = tmp_path / "x.geojson"
    path.write_text(json.dumps([feature]))
    with pytest.raises(AnnotationError, match="has holes"):
        read_annotations(path)


def test_large_masks_are_filled_band_by_band() -> None:
    # 4000 columns: a band holds about 520 rows, so the square spans three bands.
    square = SlideAnnotations(tumour=(_square(1000, 100, 3000, 1300),), exclusions=(_square(1500, 500, 2500, 600),))
    mask = rasterize_annotations(square, 1.0, (1400, 4000))
    assert mask.sum() == 2000 * 1200 - 1000 * 100
    assert mask[100:1300, 1000:3000].sum() == mask.sum()


def test_rasterize_refuses_bad_settings() -> None:
    square = SlideAnnotations(tumour=(_square(0, 0, 4, 4),))
    with pytest.raises(ConfigError, match="l0_downsample"):
        rasterize_annotations(square, 0.0, (4, 4))
    with pytest.raises(ConfigError, match="mask shape"):
        rasterize_annotations(square, 1.0, (-1, 4))
    assert rasterize_annotations(SlideAnnotations(), 1.0, (3, 5)).shape == (3, 5)
