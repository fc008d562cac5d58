"""One slide-access seam: only `pcam_scan.slide_backends` opens slide files with a library, and
what it offers (metadata, region reads, thumbnail, deep-zoom tiles) comes from one backend class."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.errors import SlideError
from pcam_scan.slide_backends import DeepZoomTiles, SlideBackend, open_slide_file
from tests.conftest import REPO_ROOT
from tests.slide_files import write_pyramid

SLIDE_LIBRARIES = {"openslide", "tiffslide", "cucim"}
SEAM = REPO_ROOT / "pcam_scan" / "slide_backends"
PRODUCT_FOLDERS = ("pcam_scan", "cluster", "training", "bench")


def _imported_top_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_outside_the_seam_imports_a_slide_library() -> None:
    offenders = []
    for folder in PRODUCT_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if SEAM in path.parents:
                continue
            found = _imported_top_names(path) & SLIDE_LIBRARIES
            if found:
                offenders.append(f"{path.relative_to(REPO_ROOT)}: {', '.join(sorted(found))}")
    assert offenders == []
    # the scan itself is not vacuous: the seam's own backend is found by the same walk
    assert "openslide" in _imported_top_names(SEAM / "openslide_backend.py")


def test_the_backend_offers_the_protocol_and_reads_white_outside_the_slide(tmp_path: Path) -> None:
    image = np.full((600, 800, 3), 200, dtype=np.uint8)
    image[100:300, 200:500] = (90, 40, 120)
    path = write_pyramid(tmp_path / "s.tif", image, 0.25)
    slide_file = open_slide_file(path)
    try:
        assert isinstance(slide_file, SlideBackend)
        meta = slide_file.metadata
        assert meta.l0_wh == (800, 600) and meta.level_downsamples[0] == 1.0
        assert meta.recorded_mpp.mpp_xy_um_px == (pytest.approx(0.25), pytest.approx(0.25))
        region = np.asarray(slide_file.read_region((700, 100), 0, (200, 100)).convert("RGB"))
        assert (region[:, :100] == 200).all() and (region[:, 100:] == 255).all()
        assert max(slide_file.thumbnail((100, 100)).size) == 100
        tiles = slide_file.deep_zoom(254, 1)
        assert isinstance(tiles, DeepZoomTiles)
        top_level = 10  # ceil(log2(800))
        tile = tiles.tile(top_level, 1, 0)
        assert tile.size == (256, 255)
    finally:
        slide_file.close()


def test_every_refusal_is_one_slide_error(realdata: Path, tmp_path: Path) -> None:
    not_a_slide = tmp_path / "notes.tif"
    not_a_slide.write_text("not a TIFF")
    for path, words in [
        (not_a_slide, "not a whole-slide image"),
        (tmp_path, "is a directory"),
        (tmp_path / "absent.svs", "no such file"),
    ]:
        with pytest.raises(SlideError, match=words):
            open_slide_file(path)
    broken = open_slide_file(realdata / "openslide-python" / "unreadable.svs")
    try:
        with pytest.raises(SlideError, match="cannot read pixels"):
            broken.read_region((0, 0), 0, (16, 16))
    finally:
        broken.close()
