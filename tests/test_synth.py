"""Synthetic Camelyon16-like slides: OpenSlide reads them right, the ground truth lies exactly on
the tumour texture, the mask is the XML, reference.csv and synth.json describe the slides, and
the same seed gives the same bytes. Slides are small (a few Mpx at 0.972 um/px)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from scipy import ndimage

from pcam_scan.annotations.asap import read_asap_xml
from pcam_scan.annotations.model import SlideAnnotations
from pcam_scan.annotations.rasterize import rasterize_annotations
from pcam_scan.cli import main
from pcam_scan.errors import ConfigError
from pcam_scan.synth import (
    SlideSpec,
    SynthSpec,
    lesion_category,
    plan_slide,
    write_synthetic_dataset,
    write_synthetic_slide,
)
from pcam_scan.synth.shapes import longest_diameter, points_in_polygon
from pcam_scan.synth.texture import SlideTexture

MPP = 0.972
SMALL = SlideSpec(width_px=3000, height_px=2000, mpp_um_px=MPP)
TINY = SlideSpec(width_px=1237, height_px=1111, mpp_um_px=MPP)
# A pixel this dark in red is haematoxylin (a nucleus); stroma and cytoplasm are far lighter.
NUCLEAR_RED_MAX = 120
CATEGORY_BOUNDS_UM = {"macro": (2000.0, np.inf), "micro": (200.0, 2000.0), "itc": (0.0, 200.0)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("synth") / "out"
    slides = write_synthetic_dataset(out, SynthSpec(SMALL, tumour_count=2, normal_count=1, seed=7))
    return out, slides


def level0_rgb(path: Path) -> np.ndarray:
    with openslide.OpenSlide(path) as slide:
        return np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))


def nuclear(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] < NUCLEAR_RED_MAX


def tissue(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int16)
    return (rgb.max(axis=2) - rgb.min(axis=2)) > 25


def test_openslide_reads_generic_tiff_with_mpp_and_halving_levels(dataset):
    out, slides = dataset
    for slide in slides:
        assert openslide.OpenSlide.detect_format(slide.path) == "generic-tiff"
        with openslide.OpenSlide(slide.path) as osr:
            assert osr.properties["openslide.vendor"] == "generic-tiff"
            assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(MPP, rel=1e-6)
            assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(MPP, rel=1e-6)
            assert osr.dimensions == (SMALL.width_px, SMALL.height_px)
            dims = osr.level_dimensions
            assert len(dims) >= 3
            for k in range(1, len(dims)):
                assert dims[k] == (dims[k - 1][0] // 2, dims[k - 1][1] // 2)
                assert osr.level_downsamples[k] == pytest.approx(2**k, rel=0.01)
            assert max(dims[-1]) <= 512 < max(dims[-2])
            assert dims == slide.level_wh


def test_lower_levels_are_the_averaged_level_above(tmp_path):
    """Odd sizes, strips that do not divide the height: each level is the 2x2 mean of the one above."""
    slide = write_synthetic_slide(tmp_path / "odd.tif", TINY, seed=3, tumour=True)
    with openslide.OpenSlide(slide.path) as osr:
        assert osr.level_dimensions == ((1237, 1111), (618, 555), (309, 277))
        previous = np.asarray(osr.read_region((0, 0), 0, osr.level_dimensions[0]).convert("RGB"))
        for level in (1, 2):
            w, h = osr.level_dimensions[level]
            actual = np.asarray(osr.read_region((0, 0), level, (w, h)).convert("RGB")).astype(float)
            expected = previous[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
            assert np.abs(actual - expected).mean() < 4.0  # JPEG error only
            previous = actual.astype(np.uint8)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    spec = SynthSpec(TINY, tumour_count=1, normal_count=1, seed=11)
    first = write_synthetic_dataset(tmp_path / "a", spec)
    write_synthetic_dataset(tmp_path / "b", spec)
    write_synthetic_dataset(tmp_path / "c", SynthSpec(TINY, tumour_count=1, normal_count=1, seed=12))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {
        "tumor_001.tif",
        "normal_001.tif",
        "annotations/tumor_001.xml",
        "masks/tumor_001_Mask.tif",
        "reference.csv",
        "synth.json",
    }
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for slide in first:
        other = tmp_path / "c" / slide.path.name
        assert slide.path.read_bytes() != other.read_bytes()


def test_texture_is_the_same_whatever_the_block_split():
    """No seams: a region cut into blocks at odd places renders exactly as in one piece (here
    across a lesion's edge, so both kinds of nuclei and the tumour boundary are cut)."""
    plan = plan_slide(TINY, seed=5, tumour=True)
    texture = SlideTexture(plan)
    cx, cy = (int(v) for v in plan.lesions[0].l0_centre_xy)
    x0, y0, w, h = cx - 350, cy - 250, 700, 500
    whole = texture.render(x0, y0, w, h)
    for sx, sy in ((333, 170), (1, 499), (512, 256)):
        top = np.concatenate([texture.render(x0, y0, sx, sy), texture.render(x0 + sx, y0, w - sx, sy)], axis=1)
        bottom = np.concatenate(
            [texture.render(x0, y0 + sy, sx, h - sy), texture.render(x0 + sx, y0 + sy, w - sx, h - sy)],
            axis=1,
        )
        np.testing.assert_array_equal(whole, np.concatenate([top, bottom], axis=0))
    # Single pixels across the tissue's edge: some see a sliver of tissue with no nucleus in it.
    y = int(plan.tissue[0][:, 1].mean())
    edge = int(np.argmax(texture.labels(0, y, TINY.width_px, 1)[0] > 0))
    row = texture.render(edge - 40, y, 80, 1)
    pixels = np.concatenate([texture.render(edge - 40 + dx, y, 1, 1) for dx in range(80)], axis=1)
    np.testing.assert_array_equal(row, pixels)


def test_annotation_lies_exactly_on_tumour_texture(dataset):
    """Just inside the polygons nuclei are dense and dark; just outside they are normal. A
    polygon shifted by a few pixels would put tumour texture on both sides."""
    out, slides = dataset
    for slide in (s for s in slides if s.tumour):
        rgb = level0_rgb(slide.path)
        annotations = read_asap_xml(slide.xml_path)
        inside = rasterize_annotations(annotations, 1.0, rgb.shape[:2])
        dark, on_tissue = nuclear(rgb), tissue(rgb)
        ring_in = inside & ~ndimage.binary_erosion(inside, iterations=8)
        ring_out = ndimage.binary_dilation(inside, iterations=8) & ~inside & on_tissue
        far = on_tissue & ~ndimage.binary_dilation(inside, iterations=60)
        assert dark[inside].mean() > 0.25
        assert dark[ring_in].mean() > 3 * dark[ring_out].mean()
        assert dark[inside].mean() > 3 * dark[far].mean()
        for polygon, lesion in zip(annotations.tumour, slide.lesions, strict=True):
            alone = rasterize_annotations(SlideAnnotations(tumour=(polygon,)), 1.0, rgb.shape[:2])
            assert dark[alone].mean() > 3 * dark[far].mean(), lesion.category


def test_exclusion_inside_a_macro_lesion_has_normal_texture():
    spec = SlideSpec(width_px=2600, height_px=2600, mpp_um_px=1.6)
    plan = next(
        p
        for p in (plan_slide(spec, seed, tumour=True) for seed in range(40))
        if any(lesion.exclusion_l0_xy is not None for lesion in p.lesions)
    )
    lesion = next(lesion for lesion in plan.lesions if lesion.exclusion_l0_xy is not None)
    x0, y0 = np.floor(lesion.exclusion_l0_xy.min(axis=0)).astype(int) - 40
    x1, y1 = np.ceil(lesion.exclusion_l0_xy.max(axis=0)).astype(int) + 40
    rgb = SlideTexture(plan).render(int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    annotations = plan.annotations()
    origin = (float(x0), float(y0))
    hole = rasterize_annotations(SlideAnnotations(tumour=annotations.exclusions), 1.0, rgb.shape[:2], origin)
    tumour = rasterize_annotations(annotations, 1.0, rgb.shape[:2], origin)
    assert not (hole & tumour).any()
    assert nuclear(rgb)[tumour].mean() > 3 * nuclear(rgb)[hole].mean()


def test_mask_is_the_rasterised_xml_at_level_5(dataset):
    out, slides = dataset
    for slide in (s for s in slides if s.tumour):
        annotations = read_asap_xml(slide.xml_path)
        assert [p.group for p in annotations.tumour] == ["_0"] * len(slide.lesions)
        for polygon, lesion in zip(annotations.tumour, slide.lesions, strict=True):
            np.testing.assert_array_equal(polygon.l0_xy, lesion.l0_xy)
        with tifffile.TiffFile(slide.mask_path) as tif:
            assert len(tif.pages) == 1
            page = tif.pages[0]
            mask = page.asarray()
            x_res = page.tags["XResolution"].value
            assert page.tags["ResolutionUnit"].value == 3  # centimetre
        assert mask.dtype == np.uint8
        assert mask.shape == (SMALL.height_px // 32, SMALL.width_px // 32)
        assert set(np.unique(mask)) == {0, 255}
        assert 1e4 / (x_res[0] / x_res[1]) == pytest.approx(MPP * 32, rel=1e-6)
        expected = rasterize_annotations(annotations, 32.0, mask.shape)
        np.testing.assert_array_equal(mask == 255, expected)


def test_reference_csv_and_manifest_describe_the_slides(dataset, realdata):
    out, slides = dataset
    with (out / "reference.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    with (realdata / "camelyon16" / "reference.csv").open(newline="") as f:
        camelyon_width = len(next(csv.reader(f)))
    assert all(len(row) == camelyon_width for row in rows)
    assert sorted(row[0] for row in rows) == sorted(p.stem for p in out.glob("*.tif"))
    manifest = json.loads((out / "synth.json").read_text())
    by_name = {entry["name"]: entry for entry in manifest["slides"]}
    for name, kind, histotype, category in rows:
        entry = by_name[name]
        categories = {lesion["category"] for lesion in entry["lesions"]}
        if name.startswith("tumor_"):
            assert kind == "Tumor" and histotype in {"IDC", "ILC"}
            assert categories & {"macro", "micro"}
            assert category == ("Macro" if "macro" in categories else "Micro")
            assert (out / entry["annotation"]).is_file() and (out / entry["mask"]).is_file()
        else:
            assert (kind, histotype, category) == ("Normal", "None", "None")
            assert entry["lesions"] == [] and entry["annotation"] is None and entry["mask"] is None
    for slide in (s for s in slides if s.tumour):
        polygons = {p.name: p for p in read_asap_xml(slide.xml_path).tumour}
        for lesion in by_name[slide.name]["lesions"]:
            measured_um = longest_diameter(polygons[lesion["annotation"]].l0_xy) * MPP
            assert lesion["diameter_um"] == pytest.approx(measured_um, abs=1e-3)
            assert lesion_category(measured_um) == lesion["category"]
            centre = np.array([lesion["l0_centre_xy"]])
            assert points_in_polygon(centre, polygons[lesion["annotation"]].l0_xy).all()


@pytest.mark.parametrize(
    "spec",
    [
        SlideSpec(width_px=25_000, height_px=50_000, mpp_um_px=0.972),
        SlideSpec(width_px=16_384, height_px=12_288, mpp_um_px=0.243),
        SlideSpec(width_px=1100, height_px=1100, mpp_um_px=0.972),
    ],
    ids=["large", "default", "smallest"],
)
def test_lesions_fall_in_their_categories_inside_tissue(spec):
    seen = set()
    for seed in range(12):
        plan = plan_slide(spec, seed, tumour=True)
        assert {lesion.category for lesion in plan.lesions} & {"macro", "micro"}
        for lesion in plan.lesions:
            diameter_um = longest_diameter(lesion.l0_xy) * spec.mpp_um_px
            low, high = CATEGORY_BOUNDS_UM[lesion.category]
            assert low <= diameter_um < high
            assert diameter_um == pytest.approx(lesion.diameter_um)
            assert any(points_in_polygon(lesion.l0_xy, piece).all() for piece in plan.tissue)
            seen.add(lesion.category)
    if spec.width_px == 25_000:
        assert seen == {"macro", "micro", "itc"}


def test_normal_slide_has_no_lesion_and_no_tumour_texture(dataset):
    out, slides = dataset
    normal = next(s for s in slides if not s.tumour)
    assert normal.lesions == () and normal.annotations.is_empty
    assert not (out / "annotations" / f"{normal.name}.xml").exists()
    assert not (out / "masks" / f"{normal.name}_Mask.tif").exists()
    tumour = next(s for s in slides if s.tumour)

    def window_fractions(rgb: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Nuclear fraction of every 96 px window (PCam's patch) that is all tissue and `keep`."""
        h, w = (rgb.shape[0] // 96) * 96, (rgb.shape[1] // 96) * 96
        windows = lambda a: a[:h, :w].reshape(h // 96, 96, w // 96, 96).mean(axis=(1, 3))  # noqa: E731
        full = windows(tissue(rgb) & keep) == 1.0
        return windows(nuclear(rgb))[full]

    normal_rgb = level0_rgb(normal.path)
    normal_windows = window_fractions(normal_rgb, np.ones(normal_rgb.shape[:2], bool))
    tumour_rgb = level0_rgb(tumour.path)
    inside = rasterize_annotations(read_asap_xml(tumour.xml_path), 1.0, tumour_rgb.shape[:2])
    tumour_windows = window_fractions(tumour_rgb, inside)
    assert len(normal_windows) > 100 and len(tumour_windows) > 0
    assert normal_windows.max() < tumour_windows.min()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tumour_count": -1}, "--tumor"),
        ({"normal_count": -2}, "--normal"),
        ({"tumour_count": 0, "normal_count": 0}, "nothing to write"),
        ({"seed": -5}, "--seed"),
    ],
)
def test_bad_counts_are_config_errors(kwargs, message):
    settings = {"slide": TINY, "tumour_count": 1, "normal_count": 1, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        SynthSpec(**settings)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width_px": 500}, "too small to hold tissue"),
        ({"height_px": 0}, "too small to hold tissue"),
        ({"mpp_um_px": 50.0}, "not a slide resolution"),
        ({"mpp_um_px": 0.0}, "not a slide resolution"),
        ({"mpp_um_px": float("nan")}, "--mpp"),
        ({"width_px": 10.5}, "whole number"),
    ],
)
def test_bad_slide_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SlideSpec(**{"width_px": 2000, "height_px": 2000, "mpp_um_px": MPP, **kwargs})


def test_unwritable_out_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    spec = SynthSpec(TINY, tumour_count=1, normal_count=0)
    with pytest.raises(ConfigError, match="not a folder"):
        write_synthetic_dataset(blocker, spec)
    with pytest.raises(ConfigError, match="cannot write to output folder"):
        write_synthetic_dataset(blocker / "below", spec)


def test_cli_writes_a_dataset_with_progress_and_rejects_bad_input_in_one_line(tmp_path, capsys):
    out = tmp_path / "cli"
    size = ["--width", "1100", "--height", "1100", "--mpp", "0.972"]
    code = main(["synth", str(out), "--tumor", "1", "--normal", "0", *size])
    captured = capsys.readouterr()
    assert code == 0
    assert (out / "tumor_001.tif").is_file() and (out / "reference.csv").is_file()
    assert "tumor_001 (1/1) level 0 rows 1100/1100" in captured.err and "ETA" in captured.err
    code = main(["synth", str(tmp_path / "bad"), "--tumor", "-1"])
    captured = capsys.readouterr()
    assert code != 0
    assert captured.err.count("\n") == 1 and captured.err.startswith("pcam-scan: error: --tumor")
    assert not (tmp_path / "bad").exists()


def test_a_folder_with_other_slides_is_refused_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "tumor_007.tif").write_bytes(b"an older data set")
    args = [
        "synth",
        str(tmp_path),
        "--tumor",
        "0",
        "--normal",
        "1",
        "--width",
        "1100",
        "--height",
        "1100",
        "--mpp",
        "0.972",
    ]
    assert main([*args, "--quiet"]) == 2
    assert "tumor_007" in capsys.readouterr().err
    assert not (tmp_path / "normal_001.tif").exists() and not (tmp_path / "reference.csv").exists()
