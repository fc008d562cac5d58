"""Slide quality control: the per-cell measures on real synthetic pixels with known artefacts, the
store's QC arrays and verdict, the one exclusion every consumer reads, and QC's commands."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
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
from pcam_scan.tissue import TissueSettings, tissue_pixels

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


RED_BLOOD_CELL_RGB = ((112, 28, 46), (189, 79, 99))
"""Red blood cells as the real slides of tests/data show them (mean colours of their red-hue
pixels): packed and dark in the TCGA frozen section, paler in CMU-1."""


@pytest.mark.parametrize("rgb", RED_BLOOD_CELL_RGB)
def test_a_vessel_packed_with_red_blood_cells_is_not_red_marker(texture: SlideTexture, rgb: tuple[int, ...]) -> None:
    region, x0, y0 = tissue_region(texture)
    vessel = Disc((x0 + HALO_PX + 4.0 * CELL_PX, y0 + HALO_PX + 4.0 * CELL_PX), 1.5 * CELL_PX)
    ys, xs = np.mgrid[0 : region.shape[0], 0 : region.shape[1]].astype(np.float64)
    inside = vessel.covers(xs + x0 + 0.5, ys + y0 + 0.5)
    rng = np.random.default_rng(0)  # cell-to-cell shading of the packed cells, a few levels
    shade = np.clip(1.0 + 0.08 * rng.standard_normal(inside.shape), 0.8, 1.2)[..., None]
    painted = region.copy()
    painted[inside] = np.clip(np.array(rgb, np.float64) * shade[inside], 0, 255).astype(np.uint8)
    assert cell_share(SlideArtefacts(blur=(vessel,)), "blur", x0, y0, 8).max() == 1.0  # whole cells of blood
    flags = measure_block(painted, np.ones((8, 8), dtype=bool), HALO_PX, CELL_PX, 0.0, QcSettings()).flags
    assert not (flags & (INK | INK_NEARBY)).any()


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


def test_a_fold_over_tumour_is_flagged_and_unfolded_tumour_is_not() -> None:
    """Tumour is denser than the slide's typical tissue (more, darker nuclei) but not in eosin; a
    fold doubles every pixel's density, tumour's too. The reference is the slide's, as planning
    takes it: the median eosin of its tissue pixels at the thumbnail's 8x coarser plane."""
    plan = plan_slide(SlideSpec(width_px=1400, height_px=1400, mpp_um_px=0.972), seed=3, tumour=True)
    slide = SlideTexture(plan)
    whole = slide.render(0, 0, 1400, 1400)
    thumbnail = whole.reshape(175, 8, 175, 8, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    on_tissue, _, _ = tissue_pixels(thumbnail, TissueSettings(), 8 * 0.972)
    reference = float(np.median(eosin_density(thumbnail[on_tissue])))
    n_cells = 8
    side = n_cells * CELL_PX + 2 * HALO_PX
    x0, y0 = (plan.annotations().tumour[0].l0_xy.mean(axis=0) - side // 2).astype(int)
    region = slide.render(int(x0), int(y0), side, side)
    tumour = slide.labels(int(x0) + HALO_PX, int(y0) + HALO_PX, n_cells * CELL_PX, n_cells * CELL_PX) == 3
    tumour_cells = tumour.reshape(n_cells, CELL_PX, n_cells, CELL_PX).mean(axis=(1, 3)) >= 0.5
    fold = Stroke(np.array([[x0 - 50.0, y0 + side / 2], [x0 + side + 50.0, y0 + side / 2]]), 60.0, "fold")
    artefacts = SlideArtefacts(folds=(fold,))
    painted = artefacts.paint(region, int(x0), int(y0), slide.render)
    tissue = np.ones((n_cells, n_cells), dtype=bool)
    flags = measure_block(painted, tissue, HALO_PX, CELL_PX, reference, QcSettings()).flags
    share = cell_share(artefacts, "fold", int(x0), int(y0), n_cells)
    assert (tumour_cells & (share >= 0.9)).any() and (tumour_cells & (share == 0)).any()
    assert ((flags & FOLD) != 0)[share >= 0.9].all()
    assert not ((flags & FOLD) != 0)[share == 0].any()


def test_a_bubble_over_a_fold_draws_unfolded_tissue_and_the_folds_truth_stops_there(texture: SlideTexture) -> None:
    region, x0, y0 = tissue_region(texture)
    fold = Stroke(np.array([[x0 - 50.0, 700.0], [x0 + 400.0, 700.0]]), 60.0, "fold")
    bubble = Disc((x0 + HALO_PX + 6.0 * CELL_PX, 700.0), 2.0 * CELL_PX)
    artefacts = SlideArtefacts(folds=(fold,), bubbles=(bubble,), rim_px=4.0)
    painted = artefacts.paint(region, x0, y0, texture.render).astype(int)
    ys, xs = np.mgrid[0 : region.shape[0], 0 : region.shape[1]].astype(np.float64)
    inner = Disc(bubble.l0_centre_xy, bubble.radius_px - 5.0).covers(xs + x0 + 0.5, ys + y0 + 0.5)
    under = inner & fold.covers(xs + x0 + 0.5, ys + y0 + 0.5)
    assert under.any() and np.abs(painted[under] - region[under].astype(int)).max() <= 1  # doubled, then halved
    truth = artefacts.cell_masks(1400 // CELL_PX, 1400 // CELL_PX, float(CELL_PX))["fold"]
    cx, cy = (int(c // CELL_PX) for c in bubble.l0_centre_xy)
    assert not truth[cy, cx] and truth[cy, cx - 4]


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
    with np.load(root / "slides" / "qc" / "normal_001_qc.npz") as stored:  # closed: no ResourceWarning later
        truth = dict(stored)
    tissue = on.read_tissue("normal_001")
    for kind, bit in (("ink", INK), ("blur", BLUR), ("fold", FOLD)):
        true = truth[kind] & tissue
        found = (flags & bit) != 0
        assert true.any()
        assert np.count_nonzero(found & true) >= 0.6 * np.count_nonzero(true), kind
    assert np.isnan(focus[~tissue]).all() and np.isfinite(focus[tissue]).all()
    assert on.stored_slide("normal_001").qc_verdict in ("warn", "not assessable")


@pytest.fixture(scope="module")
def stain_normalised_store(artefact_scan: tuple[Path, Path, Path], tiny_checkpoint: Path) -> Path:
    """The artefact slide scanned again with QC on and Macenko normalisation to another centre's
    stain (`centre-b`: darker, bluer), so the model's regions differ from the read ones."""
    root = artefact_scan[0]
    reference_plan = plan_slide(
        SlideSpec(width_px=1400, height_px=1400, mpp_um_px=0.972, stain_preset="centre-b"), seed=3, tumour=True
    )
    reference = root / "reference-centre-b.png"
    Image.fromarray(SlideTexture(reference_plan).render(450, 450, 512, 512)).save(reference)
    store = root / "qc-stain.zarr"
    argv = ["scan", str(root / "slides"), "--model", str(tiny_checkpoint), "--store", str(store), "--in-process"]
    assert main([*argv, "--device", "cpu", "--stain-normalise", "macenko", "--stain-reference", str(reference)]) == 0
    return store


def test_qc_measures_the_pixels_as_read_not_the_stain_normalised_ones(
    artefact_scan: tuple[Path, Path, Path], stain_normalised_store: Path
) -> None:
    on = HeatmapStore.open(str(artefact_scan[1]))
    stained = HeatmapStore.open(str(stain_normalised_store))
    assert not np.array_equal(on.read_prob("normal_001"), stained.read_prob("normal_001"), equal_nan=True)
    plain_qc, stained_qc = on.read_qc("normal_001"), stained.read_qc("normal_001")
    assert plain_qc is not None and stained_qc is not None
    assert np.array_equal(plain_qc[0], stained_qc[0])
    assert np.array_equal(plain_qc[1], stained_qc[1], equal_nan=True)
    assert on.stored_slide("normal_001").qc_verdict == stained.stored_slide("normal_001").qc_verdict


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


def write_green_ink_checkpoint(path: Path) -> None:
    """A real tiny-CNN checkpoint with set weights that calls a patch tumour when about 1% of it
    is green marker (green above red by 0.1 or more; H&E is never so): a model biased to fire on
    ink, as the demo's small model does beside a stroke. Input scaled to [0, 1] (mean 0, std 1);
    conv 1 takes the centre pixel's G - R, convs 2 and 3 average their 3 x 3 windows, the head
    reads the mean of that map (BatchNorms set to identity)."""
    import torch

    from pcam_scan.model.architectures import tiny_cnn
    from pcam_scan.model.checkpoint import save_checkpoint
    from pcam_scan.model.metadata import ModelMetadata, Normalisation, Provenance
    from pcam_scan.model.names import TINY_CNN

    network = tiny_cnn(2).eval()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.zero_()
            elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                assert module.running_var is not None
                module.weight.fill_(1.0), module.bias.zero_(), module.running_var.fill_(1.0 - module.eps)
        body, head = network[0], network[1]
        body[0].weight[0, 0, 1, 1], body[0].weight[0, 1, 1, 1] = -10.0, 10.0  # 10 (G - R) ...
        body[1].bias[0] = -1.0  # ... - 1: positive where G - R > 0.1
        body[3].weight[0, 0] = 1.0 / 9.0
        body[6].weight[0, 0] = 1.0 / 9.0
        head[4].weight[0, 64] = 1.0  # the average-pooled channel 0
        head[8].weight[1, 0], head[8].weight[0, 0] = 2000.0, 0.0
        head[6].bias[0] = -0.008  # tumour when the patch's mean exceeds 0.008 (~1% of it inked)
    metadata = ModelMetadata(
        architecture=TINY_CNN,
        provenance=Provenance(data="none: weights set by hand to fire on green marker", date="2026-12-07"),
        normalisation=Normalisation((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    )
    save_checkpoint(network, path, metadata)


def test_a_model_firing_beside_a_stroke_calls_no_ink_slide_positive(tmp_path: Path) -> None:
    """Issue 20's target: no positive call caused by ink on a normal slide. The model fires on
    every patch with a little green marker in it, so on the cells beside a stroke, including cells
    two cells from the nearest ink cell (whose patch holds a stroke edge too thin for an ink cell):
    QC excludes them all, and the ink mask itself stays where the ink is."""
    from tests.scanned_store import scan_inked_slide

    model = tmp_path / "green-ink.safetensors"
    write_green_ink_checkpoint(model)
    store_path = scan_inked_slide(tmp_path, model, "green")
    store = HeatmapStore.open(str(store_path))
    raw = store.read_prob("normal_001")
    heatmap = read_heatmap(store, "normal_001")
    assert heatmap.qc_flags is not None
    ink = (heatmap.qc_flags & INK) != 0
    fired = heatmap.tissue & (raw >= 0.5)
    beyond_one_cell = fired & ~ndimage.maximum_filter(ink, size=3)
    assert ink.any() and beyond_one_cell.any()  # the model fires beside the stroke, past the patch's reach
    far = ~ndimage.maximum_filter(ink, size=7) & heatmap.tissue
    assert far.any() and not (raw[far] >= 0.5).any()  # on tissue away from ink it does not fire
    assert not (heatmap.prob >= 0.5).any()  # every firing cell is excluded
    with np.load(tmp_path / "slides" / "qc" / "normal_001_qc.npz") as truth:
        assert not (ink & ~ndimage.binary_dilation(truth["ink"])).any()  # the ink mask is where the ink is
    diagnosis = store.stored_slide("normal_001").diagnosis
    assert diagnosis is not None and diagnosis["call"] != "positive"
