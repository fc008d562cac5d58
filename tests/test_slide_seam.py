"""One slide-access seam: only `pcam_scan.slide_backends` opens slide files with a library, and
what it offers (metadata, region reads, thumbnail, deep-zoom tiles) comes from one backend class."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pcam_scan.errors import SlideError
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.slide import Slide
from pcam_scan.slide_backends import BackendMetadata, DeepZoomTiles, RecordedMpp, SlideBackend, open_slide_file
from pcam_scan.tissue import TissueSettings, detect_tissue
from pcam_scan.viewer.tiles import DeepZoomGrid
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
        top_level = 10  # ceil(log2(800))
        assert tiles(top_level, 1, 0).size == (256, 255)
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


class TifffileBackend:
    """A second backend in one class: generic TIFF pyramids through tifffile, each level decoded
    whole (fine for the small files of a test). It shows that the protocol is all `Slide` needs."""

    def __init__(self, levels: list[np.ndarray], recorded: RecordedMpp) -> None:
        self._levels = levels
        l0_h, l0_w = levels[0].shape[:2]
        self.metadata = BackendMetadata(
            backend="tifffile",
            vendor="tifffile",
            level_wh=tuple((a.shape[1], a.shape[0]) for a in levels),
            level_downsamples=tuple((l0_w / a.shape[1] + l0_h / a.shape[0]) / 2 for a in levels),
            recorded_mpp=recorded,
            objective_power=None,
        )

    @classmethod
    def open(cls, path: Path) -> TifffileBackend:
        try:
            with tifffile.TiffFile(path) as tif:
                levels = [page.asarray() for page in tif.pages]
                unit = {2: "inch", 3: "centimeter"}.get(int(tif.pages[0].tags["ResolutionUnit"].value), "")
                px_per_unit = [n / d for n, d in (tif.pages[0].tags[k].value for k in ("XResolution", "YResolution"))]
        except (tifffile.TiffFileError, KeyError, OSError) as err:
            raise SlideError(f"{path}: cannot open slide: {err}") from None
        return cls(levels, RecordedMpp("tifffile", tiff_resolution_unit=unit, tiff_px_per_unit_xy=tuple(px_per_unit)))

    def read_region(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> Image.Image:
        level_px = self._levels[level]
        downsample = self.metadata.level_downsamples[level]
        x0, y0 = round(l0_xy[0] / downsample), round(l0_xy[1] / downsample)
        out = np.full((size_wh[1], size_wh[0], 3), 255, dtype=np.uint8)
        src = level_px[max(y0, 0) : max(y0 + size_wh[1], 0), max(x0, 0) : max(x0 + size_wh[0], 0)]
        out[max(-y0, 0) : max(-y0, 0) + src.shape[0], max(-x0, 0) : max(-x0, 0) + src.shape[1]] = src
        return Image.fromarray(out)

    def read_region_rgb(self, l0_xy: tuple[int, int], level: int, size_wh: tuple[int, int]) -> np.ndarray:
        return np.asarray(self.read_region(l0_xy, level, size_wh))

    def thumbnail(self, max_wh: tuple[int, int]) -> Image.Image:
        image = Image.fromarray(self._levels[-1])
        image.thumbnail(max_wh)
        return image

    def deep_zoom(self, tile_px: int, overlap_px: int) -> DeepZoomTiles:
        grid = DeepZoomGrid(*self.metadata.l0_wh, tile_px, overlap_px)

        def tile(dz_level: int, col: int, row: int) -> Image.Image:
            x0, y0, x1, y1 = grid.tile_box(dz_level, col, row)
            scale = grid.l0_per_level_px(dz_level)
            region = self.read_region((x0 * scale, y0 * scale), 0, ((x1 - x0) * scale, (y1 - y0) * scale))
            return region.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)

        return tile

    def close(self) -> None:
        self._levels = []


def test_a_second_backend_is_one_class_and_reads_what_openslide_reads(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(150, 250, size=(1024, 1536, 3), dtype=np.uint8)
    image[300:700, 400:1000] = (120, 50, 140)
    path = write_pyramid(tmp_path / "s.tif", image, 0.243)
    with Slide(path) as by_openslide, Slide(path, backend=TifffileBackend) as by_tifffile:
        assert by_tifffile.info.mpp_um_px == pytest.approx(by_openslide.info.mpp_um_px)
        assert by_tifffile.info.levels == by_openslide.info.levels
        for mpp in (0.972, 0.5):  # level 2 as is; level 1 resampled
            ours, plan = by_tifffile.read_l0_region_at_mpp((-100, 200), (900, 700), mpp)
            theirs, _ = by_openslide.read_l0_region_at_mpp((-100, 200), (900, 700), mpp)
            assert np.array_equal(ours, theirs), plan
        grid = CellGrid(1536, 1024, 0.243, 0.972, PatchGeometry())
        tissue = [detect_tissue(s, grid, TissueSettings()).cells for s in (by_openslide, by_tifffile)]
        assert np.array_equal(*tissue)
    files = [open_slide_file(path, backend) for backend in ("openslide", TifffileBackend)]
    try:
        assert all(isinstance(f, SlideBackend) for f in files)
        grid = DeepZoomGrid(1536, 1024)
        # full resolution: the same pixels; two levels down: each library's own downsampling
        # (per-pixel noise of +-50 leaves a few grey levels, a misplaced tile would leave ~30)
        for level, col, row, most in ((grid.max_level, 2, 1, 0), (grid.max_level - 2, 0, 0, 5)):
            ours, theirs = (
                np.asarray(f.deep_zoom(254, 1)(level, col, row).convert("RGB"), dtype=np.int16) for f in files
            )
            assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() <= most
    finally:
        for f in files:
            f.close()
