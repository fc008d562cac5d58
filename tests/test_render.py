"""Static overlays (`pcam-scan render`) over a real store scanned from synthetic slides, and the
pieces shared with the viewer: heatmap sampling and colouring, summaries, scale bars."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcam_scan.cli import main
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.render.heatmap_image import HeatmapPyramid, HeatmapStyle, colourise
from pcam_scan.render.overlay import load_overlay, nice_length
from pcam_scan.render.slide_files import SlideLocator
from pcam_scan.store import HeatmapStore
from tests.scanned_store import NORMAL_PROB, TUMOUR_PROB, build_store

LUT = HeatmapStyle().lut


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("render")
    store_path, slides = build_store(folder, tumour_seeds=(7,), normal_seeds=(5,))
    return store_path, slides[0], slides[1]


# -- sampling and colour -----------------------------------------------------------------------


def small_pyramid() -> HeatmapPyramid:
    """4 x 4 cells of 100 level-0 px (slide 0.25 um/px, read plane 0.78125 um/px, 32 px cells)."""
    grid = CellGrid(
        l0_width=400,
        l0_height=400,
        slide_mpp_um_px=0.25,
        px_mpp_um_px=0.78125,
        geometry=PatchGeometry(mpp_um_px=0.78125),
    )
    level0 = (np.arange(16).reshape(4, 4) / 16).astype(np.float32)
    level0[3, 3] = np.nan
    level1 = np.array([[5 / 16, 7 / 16], [13 / 16, 14 / 16]], dtype=np.float32)  # 2x2 max, NaN ignored
    return HeatmapPyramid(grid, (level0, level1))


def test_sampling_takes_the_cell_under_each_pixel_centre() -> None:
    pyramid = small_pyramid()
    assert pyramid.l0_per_cell == pytest.approx(100.0)
    # 50 level-0 px per output pixel: level 0, two pixels per cell; origin shifted by 150 px.
    got = pyramid.sample((150.0, 0.0), 50.0, (6, 2))
    assert got[0].tolist() == pytest.approx([1 / 16, 2 / 16, 2 / 16, 3 / 16, 3 / 16, np.nan], nan_ok=True)
    # 200 px per output pixel: the 2x2 max level, one pixel per pooled cell.
    assert pyramid.level_for(200.0) == 1
    assert pyramid.sample((0.0, 0.0), 200.0, (2, 2)) == pytest.approx(np.array([[5, 7], [13, 14]]) / 16)
    assert pyramid.level_for(150.0) == 1 and pyramid.level_for(100.0) == 0 and pyramid.level_for(10_000.0) == 1
    assert np.isnan(pyramid.sample((0.0, 350.0), 50.0, (8, 1))[0, 7])  # the NaN cell stays clear


def test_colour_is_opaque_from_the_threshold_up_and_clear_elsewhere() -> None:
    style = HeatmapStyle(threshold=0.5)
    rgba = colourise(np.array([[0.49, 0.5, 1.0, np.nan]], dtype=np.float32), style)
    assert rgba[0, :, 3].tolist() == [0, 255, 255, 0]
    assert (rgba[0, 1] == style.lut[128]).all() and (rgba[0, 2] == style.lut[255]).all()
    assert (rgba[0, 0] == 0).all()


@pytest.mark.parametrize(("threshold", "colormap"), [(1.5, "viridis"), (float("nan"), "viridis"), (0.5, "no-such-map")])
def test_bad_styles_are_refused(threshold: float, colormap: str) -> None:
    with pytest.raises(ConfigError):
        HeatmapStyle(threshold, colormap)


@pytest.mark.parametrize(("at_most", "length"), [(0.37, 0.2), (1.0, 1.0), (4.9, 2.0), (7.0, 5.0), (12.0, 10.0)])
def test_scale_bar_lengths_are_round(at_most: float, length: float) -> None:
    assert nice_length(at_most) == pytest.approx(length)


# -- overlays ----------------------------------------------------------------------------------


def test_overlay_colours_the_lesion_on_the_thumbnail_raster(scanned) -> None:
    store_path, tumour, _ = scanned
    overlay = load_overlay(HeatmapStore.open(str(store_path)), SlideLocator(), "tumor_001", HeatmapStyle())
    assert overlay.slide_problem is None
    height, width = overlay.slide_rgb.shape[:2]
    assert overlay.heatmap_rgba.shape == (height, width, 4)
    assert max(width, height) == 1400

    def pixel(value: float) -> tuple[int, int]:
        rows, cols = np.nonzero(np.isclose(np.nan_to_num(tumour.prob), value))
        x, y = tumour.grid.cell_center_l0((int(rows[len(rows) // 2]), int(cols[len(cols) // 2])))
        return int(y / overlay.l0_per_px), int(x / overlay.l0_per_px)

    assert (overlay.heatmap_rgba[pixel(TUMOUR_PROB)] == LUT[round(TUMOUR_PROB * 255)]).all()
    assert overlay.heatmap_rgba[pixel(NORMAL_PROB)][3] == 0
    assert len(overlay.outlines_l0_xy) == len(tumour.slide.lesions)
    caption = overlay.summary.caption()
    assert caption.startswith("tumor_001: positive (micro), p = 0.95; largest lesion ")
    truth_mm = max(lesion.diameter_um for lesion in tumour.slide.lesions) / 1000
    shown_mm = float(caption.split("largest lesion ")[1].split(" mm")[0])
    assert shown_mm == pytest.approx(truth_mm, abs=0.035)  # sub-cell geometry: close to the truth
    tissue = overlay.slide_rgb[pixel(NORMAL_PROB)].astype(int)
    assert tissue[0] > tissue[1] + 30  # the thumbnail is H&E pink there, not the grey stand-in


def lesion_coloured_pixels(png_path) -> int:
    """Pixels of the figure's image area with the heatmap's yellow-green laid over tissue."""
    rgb = np.asarray(Image.open(png_path).convert("RGB"), dtype=np.int16)
    image_area = rgb[:, : int(rgb.shape[1] * 0.85)]  # leave out the colour bar
    r, g, b = image_area[..., 0], image_area[..., 1], image_area[..., 2]
    return int(np.count_nonzero((g > 140) & (r > 110) & (b < 110) & (g > b + 60)))


def test_render_one_slide_with_the_cli(scanned, tmp_path, capsys) -> None:
    store_path = scanned[0]
    out = tmp_path / "report" / "tumor_001.png"
    assert main(["render", str(store_path), "tumor_001", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width >= 1000
    normal_out = tmp_path / "normal.png"
    assert main(["render", str(store_path), "normal_001", "--out", str(normal_out)]) == 0
    assert lesion_coloured_pixels(out) > 2000
    assert lesion_coloured_pixels(normal_out) == 0


def test_render_all_writes_each_slide_and_a_contact_sheet(scanned, tmp_path, capsys) -> None:
    store_path = scanned[0]
    out = tmp_path / "batch"
    assert main(["render", str(store_path), "--all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == ["contact_sheet.png", "normal_001.png", "tumor_001.png"]
    assert "rendered 2 of 2 slides" in printed
    with Image.open(out / "contact_sheet.png") as sheet:
        sheet_rgb = np.asarray(sheet.convert("RGB"))
    # no dead margin: the right and bottom tenth of the sheet still draw something
    h, w = sheet_rgb.shape[:2]
    assert (sheet_rgb[:, int(0.9 * w) :] < 250).any() and (sheet_rgb[int(0.9 * h) :] < 250).any()
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > sheet.height  # two panels side by side
    assert lesion_coloured_pixels(out / "contact_sheet.png") > 100


def test_render_all_records_a_failed_slide_and_goes_on(scanned, tmp_path, capsys) -> None:
    import shutil

    store_copy = tmp_path / "run.zarr"
    shutil.copytree(scanned[0], store_copy)
    HeatmapStore.open(str(store_copy), mode="r+").mark_failed("broken_001", "cannot open slide: not a TIFF")
    out = tmp_path / "batch"
    assert main(["render", str(store_copy), "--all", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "broken_001: not rendered" in printed and "rendered 2 of 3 slides" in printed
    assert (out / "contact_sheet.png").is_file() and (out / "tumor_001.png").is_file()


def test_render_without_the_slide_file_draws_the_heatmap_and_says_why(scanned, tmp_path, capsys) -> None:
    store_path, tumour, _ = scanned
    hidden = tumour.slide.path.with_suffix(".hidden")
    tumour.slide.path.rename(hidden)
    try:
        out = tmp_path / "no_slide.png"
        assert main(["render", str(store_path), "tumor_001", "--out", str(out)]) == 0
        assert "not found" in capsys.readouterr().err
        assert lesion_coloured_pixels(out) > 2000
        out_found = tmp_path / "found.png"
        assert (
            main(["render", str(store_path), "tumor_001", "--out", str(out_found), "--slides", str(hidden.parent)]) == 0
        )
        assert "note" not in capsys.readouterr().err  # found by fingerprint under another name
    finally:
        hidden.rename(tumour.slide.path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_slide", "--out", "x.png"], "not in the store"),
        (["../etc", "--out", "x.png"], "not allowed"),
        (["tumor_001", "--all", "--out", "x"], "either a SLIDE_ID or --all"),
        (["--out", "x"], "either a SLIDE_ID or --all"),
        (["tumor_001", "--out", "x.jpg"], "must be a .png"),
        (["tumor_001", "--out", "x.png", "--threshold", "2"], "must lie in [0, 1]"),
        (["tumor_001", "--out", "x.png", "--colormap", "rainbowz"], "unknown colour map"),
    ],
)
def test_render_refusals_are_one_line(scanned, tmp_path, capsys, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["render", str(scanned[0]), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcam-scan: error: ") and message in err and err.count("\n") == 1


def test_render_refuses_what_is_not_a_store(tmp_path, capsys) -> None:
    assert main(["render", str(tmp_path / "missing.zarr"), "--all", "--out", str(tmp_path / "o")]) == 2
    assert "no heatmap store" in capsys.readouterr().err
