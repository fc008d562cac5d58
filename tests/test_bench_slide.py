"""The Camelyon16-size benchmark slide writer (bench/camelyon_slide.py), on a small slide.

It must give what OpenSlide and the scanner expect of a Camelyon16 slide: generic-tiff with the
right MPP, a consistent pyramid, and about the tissue asked for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import openslide
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from camelyon_slide import CamelyonSlideSpec, write_camelyon_size_slide  # noqa: E402

from pcam_scan.geometry import CellGrid, PatchGeometry  # noqa: E402
from pcam_scan.slide import choose_read_plan, open_slide  # noqa: E402
from pcam_scan.tissue import detect_tissue  # noqa: E402

SPEC = CamelyonSlideSpec(width_px=6144, height_px=8192, tissue_cells=600, texture_px=512, seed=4)


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    path = tmp_path_factory.mktemp("c16") / "bench.tif"
    return path, write_camelyon_size_slide(path, SPEC, log=False)


def test_openslide_reads_it_as_generic_tiff_with_its_mpp(slide: tuple[Path, dict[str, float]]) -> None:
    path, figures = slide
    with openslide.OpenSlide(str(path)) as osr:
        assert osr.properties["openslide.vendor"] == "generic-tiff"
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(0.243, abs=1e-6)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(0.243, abs=1e-6)
        assert osr.dimensions == (6144, 8192)
        assert osr.level_dimensions[:3] == ((6144, 8192), (3072, 4096), (1536, 2048))
    assert figures["tiles"] == sum(-(-w // 256) * -(-h // 256) for w, h in [(6144 >> k, 8192 >> k) for k in range(5)])


def test_each_level_is_the_2x2_average_of_the_one_above(slide: tuple[Path, dict[str, float]]) -> None:
    path, _ = slide
    with openslide.OpenSlide(str(path)) as osr:
        fine = np.asarray(osr.read_region((1024, 2048), 1, (1024, 1024)).convert("RGB"), np.float32)
        coarse = np.asarray(osr.read_region((1024, 2048), 2, (512, 512)).convert("RGB"), np.float32)
    averaged = fine.reshape(512, 2, 512, 2, 3).mean(axis=(1, 3))
    assert np.abs(averaged - coarse).mean() < 3.0  # JPEG loss only
    assert fine.std() > 10  # not a flat colour: the crop holds tissue and glass


def test_the_scanner_finds_about_the_tissue_asked_for(slide: tuple[Path, dict[str, float]]) -> None:
    path, figures = slide
    geometry = PatchGeometry()
    with open_slide(path) as s:
        plan = choose_read_plan(s.info, geometry.mpp_um_px)
        grid = CellGrid(s.info.l0_width, s.info.l0_height, s.info.mpp_um_px, plan.px_mpp_um_px, geometry)
        found = detect_tissue(s, grid).n_cells
    assert plan.level == 2 and not plan.resamples  # 0.243 * 4 = 0.972: read as is
    assert figures["expected_tissue_cells"] == pytest.approx(600, rel=0.1)
    assert found == pytest.approx(figures["expected_tissue_cells"], rel=0.25)


def test_same_spec_same_bytes(slide: tuple[Path, dict[str, float]], tmp_path: Path) -> None:
    path, _ = slide
    again = tmp_path / path.name  # the name is in the description
    write_camelyon_size_slide(again, SPEC, log=False)
    assert again.read_bytes() == path.read_bytes()
