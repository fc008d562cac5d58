"""Slide quality control: the per-cell measures on real synthetic pixels with known artefacts, the
store's QC arrays and verdict, the one exclusion every consumer reads, and QC's commands."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pcam_scan.cli import main
from pcam_scan.qc.block import measure_block
from pcam_scan.qc.flags import BLUR, BUBBLE, EXCLUDING, FOLD, INK, INK_NEARBY, blur_flags, excluded_cells
from pcam_scan.qc.measures import eosin_density
from pcam_scan.qc.settings import QcSettings
from pcam_scan.qc.verdict import NOT_ASSESSABLE, PASS, slide_verdict
from pcam_scan.store import HeatmapStore
from pcam_scan.store.queries import read_heatmap
from pcam_scan.synth.artefacts import ArtefactSpec, Disc, SlideArtefacts, Stroke
from pcam_scan.synth.layout import plan_slide
from pcam_scan.synth.spec import SlideSpec, SynthSpec
from pcam_scan.synth.texture import SlideTexture

CELL_PX = 32
HALO_PX = 32
FIXTURE_STORE = Path(__file__).parent / "data" / "store-v1" / "store"


@pytest.fixture(scope="module")
def texture() -> SlideTexture:
    """A synthetic slide drawn straight at the read plane (0.972 um/px), so a region of it is
    what the scan's block read would return."""
    return SlideTexture(plan_slide(SlideSpec(width_px=1400, height_px=1400, mpp_um_px=0.972), seed=5, tumour=False))


def tissue_region(texture: SlideTexture, n_cells: int = 8) -> tuple[np.ndarray, int, int]:
    """A block region (cells plus halo) centred on the slide's tissue, and its level-0 origin."""
    side = n_cells * CELL_PX + 2 * HALO_PX
    x0 = y0 = 700 - side // 2
    return texture.render(x0, y0, side, side), x0, y0


def cell_share(artefacts: SlideArtefacts, kind: str, x0: int, y0: int, n_cells: int) -> np.ndarray:
    """The true share of each block cell an artefact covers (cells start after the halo)."""
    shapes = artefacts.shapes(kind)
    ys, xs = np.mgrid[0 : n_cells * CELL_PX, 0 : n_cells * CELL_PX].astype(np.float64)
    covered = np.zeros(xs.shape, dtype=bool)
    for shape in shapes:
        covered |= shape.covers(xs + x0 + HALO_PX + 0.5, ys + y0 + HALO_PX + 0.5)
    return covered.reshape(n_cells, CELL_PX, n_cells, CELL_PX).mean(axis=(1, 3))


@pytest.mark.parametrize("colour", ["blue", "green", "black", "red"])
def test_a_marker_stroke_of_each_colour_flags_the_cells_it_covers_and_no_other(
    texture: SlideTexture, colour: str
) -> None:
    region, x0, y0 = tissue_region(texture)
    stroke = Stroke(np.array([[x0 - 50.0, 700.0], [x0 + 400.0, 700.0]]), 40.0, colour)
    artefacts = SlideArtefacts(strokes=(stroke,))
    painted = artefacts.paint(region, x0, y0, texture.render)
    tissue = np.ones((8, 8), dtype=bool)
    clean = measure_block(region, tissue, HALO_PX, CELL_PX, 0.0, QcSettings())
    inked = measure_block(painted, tissue, HALO_PX, CELL_PX, 0.0, QcSettings())
    share = cell_share(artefacts, "ink", x0, y0, 8)
    assert not (clean.flags & (INK | INK_NEARBY)).any()
    assert ((inked.flags & INK) != 0)[share >= 0.5].all()
    assert not ((inked.flags & INK) != 0)[share == 0].any()
    # the cells next to an ink cell have the ink in their patch: excluded too, though not ink
    ink_cells = (inked.flags & INK) != 0
    beside = ndimage.binary_dilation(ink_cells) & ~ink_cells
    assert beside.any() and ((inked.flags & INK_NEARBY) != 0)[beside].all()
    assert excluded_cells(inked.flags)[beside].all()


def test_a_fold_doubles_the_eosin_density_and_is_flagged_against_the_slide_reference(texture: SlideTexture) -> None:
    region, x0, y0 = tissue_region(texture)
    fold = Stroke(np.array([[x0 - 50.0, 700.0], [x0 + 400.0, 700.0]]), 60.0, "fold")
    artefacts = SlideArtefacts(folds=(fold,))
    painted = artefacts.paint(region, x0, y0, texture.render)
    tissue = np.ones((8, 8), dtype=bool)
    reference = float(np.median(eosin_density(region.reshape(-1, 3))))
    flags = measure_block(painted, tissue, HALO_PX, CELL_PX, reference, QcSettings()).flags
    share = cell_share(artefacts, "fold", x0, y0, 8)
    assert ((flags & FOLD) != 0)[share >= 0.9].all()
    assert not ((flags & FOLD) != 0)[share == 0].any()
    assert not (measure_block(region, tissue, HALO_PX, CELL_PX, reference, QcSettings()).flags & FOLD).any()


def test_blur_is_judged_against_the_slides_own_focus_so_sharp_cells_stay_unflagged(texture: SlideTexture) -> None:
    region, x0, y0 = tissue_region(texture)
    disc = Disc((x0 + HALO_PX + 2 * CELL_PX, y0 + HALO_PX + 4 * CELL_PX), 2.2 * CELL_PX)
    artefacts = SlideArtefacts(blur=(disc,), blur_sigma_px=2.0)
    painted = artefacts.paint(region, x0, y0, texture.render)
    tissue = np.ones((8, 8), dtype=bool)
    block = measure_block(painted, tissue, HALO_PX, CELL_PX, 0.0, QcSettings())
    flags, reference = blur_flags(block.focus, block.flags, tissue, QcSettings())
    share = cell_share(artefacts, "blur", x0, y0, 8)
    assert reference > 0
    assert ((flags & BLUR) != 0)[share >= 0.9].all()
    assert not ((flags & BLUR) != 0)[share == 0].any()
    # a second pass gives the same flags (finalize may run again after a crash)
    again, _ = blur_flags(block.focus, flags, tissue, QcSettings())
    assert np.array_equal(again, flags)


def test_the_verdict_passes_clean_tissue_and_calls_mostly_excluded_or_blurred_tissue_not_assessable() -> None:
    tissue = np.ones((10, 10), dtype=bool)
    flags = np.zeros((10, 10), dtype=np.uint8)
    assert slide_verdict(flags, tissue, QcSettings()).verdict == PASS
    flags[:6] = INK
    verdict = slide_verdict(flags, tissue, QcSettings())
    assert verdict.verdict == NOT_ASSESSABLE and verdict.shares["ink"] == pytest.approx(0.6)
    flags[:] = 0
    flags[:3] = BLUR
    assert slide_verdict(flags, tissue, QcSettings()).verdict == NOT_ASSESSABLE
    flags[:] = 0
    flags[0, :2] = BUBBLE  # 2% of the tissue: below the warn share
    assert slide_verdict(flags, tissue, QcSettings()).verdict == PASS


@pytest.fixture(scope="module")
def artefact_scan(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> tuple[Path, Path, Path]:
    """A small normal slide with ink, a fold and an out-of-focus disc, scanned with QC on and off."""
    from pcam_scan.synth.dataset import write_synthetic_dataset

    root = tmp_path_factory.mktemp("qc-scan")
    spec = SynthSpec(
        SlideSpec(width_px=2400, height_px=2200, mpp_um_px=0.486),
        0,
        1,
        seed=4,
        artefacts=ArtefactSpec(ink_strokes=2, blur_discs=1, blur_radius_um=200.0, folds=1),
    )
    write_synthetic_dataset(root / "slides", spec)
    stores = []
    for qc in ("on", "off"):
        store = root / f"qc-{qc}.zarr"
        argv = ["scan", str(root / "slides"), "--model", str(tiny_checkpoint), "--store", str(store)]
        assert main([*argv, "--in-process", "--device", "cpu", *(["--no-qc"] if qc == "off" else [])]) == 0
        stores.append(store)
    return root, stores[0], stores[1]


def test_qc_flags_the_injected_artefacts_and_never_changes_prob(artefact_scan: tuple[Path, Path, Path]) -> None:
    root, on_path, off_path = artefact_scan
    on, off = HeatmapStore.open(str(on_path)), HeatmapStore.open(str(off_path))
    assert np.array_equal(on.read_prob("normal_001"), off.read_prob("normal_001"), equal_nan=True)
    assert off.read_qc("normal_001") is None and off.stored_slide("normal_001").qc_verdict is None
    qc = on.read_qc("normal_001")
    assert qc is not None
    flags, focus = qc
    truth = np.load(root / "slides" / "qc" / "normal_001_qc.npz")
    tissue = on.read_tissue("normal_001")
    for kind, bit in (("ink", INK), ("blur", BLUR), ("fold", FOLD)):
        true = truth[kind] & tissue
        found = (flags & bit) != 0
        assert true.any()
        assert np.count_nonzero(found & true) >= 0.6 * np.count_nonzero(true), kind
    assert np.isnan(focus[~tissue]).all() and np.isfinite(focus[tissue]).all()
    assert on.stored_slide("normal_001").qc_verdict in ("warn", "not assessable")


def test_excluded_cells_read_as_not_predicted_for_every_consumer(artefact_scan: tuple[Path, Path, Path]) -> None:
    _, on_path, _ = artefact_scan
    store = HeatmapStore.open(str(on_path))
    heatmap = read_heatmap(store, "normal_001")
    assert heatmap.qc_flags is not None
    excluded = (heatmap.qc_flags & EXCLUDING) != 0
    assert excluded.any()
    assert np.isnan(heatmap.prob[excluded]).all()
    raw = store.read_prob("normal_001")
    kept = heatmap.tissue & ~excluded
    assert np.array_equal(heatmap.prob[kept], raw[kept])


def test_qc_command_writes_one_row_a_slide_and_a_store_before_qc_says_not_run(
    artefact_scan: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, on_path, off_path = artefact_scan
    for store, expected in (
        (on_path, {"warn", "not assessable"}),
        (off_path, {"not run"}),
        (FIXTURE_STORE, {"not run"}),
    ):
        out = tmp_path / f"{store.name}.csv"
        assert main(["qc", str(store), "--out", str(out)]) == 0
        rows = list(csv.DictReader(out.read_text().splitlines()))
        assert len(rows) == 1 and rows[0]["qc_verdict"] in expected
    assert "not run" in capsys.readouterr().out


def test_qupath_tiles_carry_the_store_s_qc(artefact_scan: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Every tile's focus score and 0/1 flags are the store's (this small slide has one level;
    coarser levels read the store's pooled QC the same way); excluded cells keep their tile and
    P(tumour), with "QC: excluded" 1; a store scanned without QC exports P(tumour) alone."""
    from pcam_scan.annotations.qupath_tiles import MEASUREMENT, QC_EXCLUDED, QC_FLAGS, QC_FOCUS
    from tests.test_qupath_tiles import _export, _tile_cell

    _, on_path, off_path = artefact_scan
    level = 0
    store = HeatmapStore.open(str(on_path))
    grid = store.read_grid("normal_001")
    prob = store.read_prob("normal_001", level)
    qc = store.read_qc("normal_001", level)
    assert qc is not None
    flags, focus = qc
    features = _export(on_path, tmp_path / "on", "--level", str(level))
    assert len(features) == np.count_nonzero(np.isfinite(prob))
    seen_flags = np.zeros(flags.shape, np.uint8)
    n_excluded = 0
    for feature in features:
        measurements = feature["properties"]["measurements"]
        row, col = _tile_cell(feature, grid, level)
        assert np.float32(measurements[MEASUREMENT]) == prob[row, col]
        if np.isfinite(focus[row, col]):
            assert np.float32(measurements[QC_FOCUS]) == focus[row, col]
        else:
            assert QC_FOCUS not in measurements
        for name, bit in QC_FLAGS.items():
            assert measurements[name] in (0, 1)
            seen_flags[row, col] |= bit * measurements[name]
        assert measurements[QC_EXCLUDED] == int(flags[row, col] & EXCLUDING != 0)
        n_excluded += measurements[QC_EXCLUDED]
    covered = np.isfinite(prob)
    assert np.array_equal(seen_flags[covered], flags[covered])
    assert n_excluded > 0  # the injected ink and fold
    without = _export(off_path, tmp_path / "off", "--level", str(level))
    assert len(without) == len(features)
    assert all(list(f["properties"]["measurements"]) == [MEASUREMENT] for f in without)
