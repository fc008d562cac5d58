"""Mining patches from annotated slides: cell labels by hand, labels of a synthetic slide against
its level-5 mask, patches equal to the slide's pixels, slide-level splits, balancing, hard
negatives from a real (random) checkpoint, and the PCam HDF5 round trip of mined patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcam_scan.annotations import Polygon, SlideAnnotations, read_annotations
from pcam_scan.annotations.cell_labels import tumour_cells_from_annotations, tumour_cells_from_mask, tumour_in_patch
from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.mask import read_tumour_mask_tiff
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.slide import choose_read_plan, open_slide
from pcam_scan.synth.dataset import write_synthetic_dataset
from pcam_scan.synth.spec import SlideSpec, SynthSpec
from training.hard_negatives import predictor_scorer
from training.mined_data import mine_training_data
from training.mining import (
    ChosenCells,
    HardNegativeSettings,
    MiningSettings,
    balance,
    choose_cells,
    label_slide,
    read_cell_patches,
)
from training.pcam_h5 import read_pcam_folder
from training.slide_cases import find_slide_cases
from training.splits import SlideSplit, split_slides

# 0.243 um/px slide read at 0.972 um/px: 4 level-0 px per read px, a cell is 128 level-0 px
GRID = CellGrid(l0_width=1280, l0_height=1280, slide_mpp_um_px=0.243, px_mpp_um_px=0.972, geometry=PatchGeometry())


def square(name: str, group: str, x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return Polygon(name, group, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))


def test_annotation_cells_by_hand_with_an_exclusion() -> None:
    # tumour spans level-0 x 266..500 (cols 2, 3) and y 394..600 (rows 3, 4); the exclusion
    # covers all of cell (4, 3), so that cell has no tumour left
    annotations = SlideAnnotations(
        tumour=(square("t", "_0", 266, 394, 500, 600),),
        exclusions=(square("e", "_2", 384, 512, 512, 640),),
    )
    cells = tumour_cells_from_annotations(annotations, GRID)
    assert cells.shape == (10, 10)
    assert {tuple(rc) for rc in np.argwhere(cells).tolist()} == {(3, 2), (3, 3), (4, 2)}


def test_mask_cells_by_hand_fine_and_coarse_masks() -> None:
    fine = np.zeros((40, 40), dtype=bool)  # downsample 32: pixel (12, 9) is l0 x 288..320, y 384..416
    fine[12, 9] = True
    assert np.argwhere(tumour_cells_from_mask(fine, 32.0, GRID)).tolist() == [[3, 2]]
    coarse = np.zeros((5, 5), dtype=bool)  # downsample 256: pixel (1, 1) covers cells 2..3 both ways
    coarse[1, 1] = True
    assert np.argwhere(tumour_cells_from_mask(coarse, 256.0, GRID)).tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]


def test_tumour_in_patch_reaches_the_neighbouring_cells() -> None:
    cells = np.zeros(GRID.shape, dtype=bool)
    cells[5, 5] = True
    near = tumour_in_patch(cells, GRID)
    assert np.argwhere(near).tolist() == [[r, c] for r in (4, 5, 6) for c in (4, 5, 6)]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small tumour slides and one normal slide, Camelyon16-like, with XML, masks, reference."""
    out = tmp_path_factory.mktemp("synth")
    spec = SynthSpec(slide=SlideSpec(width_px=4200, height_px=4200), tumour_count=2, normal_count=1, seed=1)
    write_synthetic_dataset(out, spec)
    return out


def test_slide_cases_pair_slides_with_their_ground_truth(synth_dir: Path) -> None:
    cases = {c.slide_id: c for c in find_slide_cases([synth_dir])}
    assert sorted(cases) == ["normal_001", "tumor_001", "tumor_002"]
    assert cases["tumor_001"].annotation_path == synth_dir / "annotations" / "tumor_001.xml"
    assert cases["tumor_001"].mask_path == synth_dir / "masks" / "tumor_001_Mask.tif"
    assert not cases["normal_001"].is_tumour


def test_a_tumour_slide_without_annotations_is_refused_by_the_reference(synth_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "tumor_001.tif").symlink_to(synth_dir / "tumor_001.tif")
    (tmp_path / "reference.csv").symlink_to(synth_dir / "reference.csv")
    with pytest.raises(ConfigError, match="tumor_001 is Tumor in .* no annotation or mask"):
        find_slide_cases([tmp_path])


def test_mined_labels_agree_with_the_level5_mask_and_patches_are_the_slide_pixels(synth_dir: Path) -> None:
    case = next(c for c in find_slide_cases([synth_dir]) if c.slide_id == "tumor_001")
    cells = label_slide(case, MiningSettings())
    assert cells.grid.l0_per_px == 4.0  # 0.243 um/px slide, level 2 used as is
    mask = read_tumour_mask_tiff(case.mask_path)  # type: ignore[arg-type]  # level 5: 32 level-0 px
    # a cell is 128 level-0 px = 4 mask px; pad so that every cell has its 4 x 4 mask block
    rows, cols = cells.grid.shape
    padded = np.zeros((rows * 4 + 2, cols * 4 + 2), dtype=bool)
    padded[1 : 1 + mask.shape[0], 1 : 1 + mask.shape[1]] = mask[: rows * 4, : cols * 4]
    positives = cells.positive_rc
    negatives = cells.negative_rc
    assert len(positives) > 20 and len(negatives) > 100
    for row, col in positives:  # some mask tumour within one mask pixel of the cell
        assert padded[row * 4 : row * 4 + 6, col * 4 : col * 4 + 6].any(), (row, col)
    for row, col in negatives:  # no mask tumour in the cell's inner 2 x 2 mask pixels
        assert not padded[row * 4 + 2 : row * 4 + 4, col * 4 + 2 : col * 4 + 4].any(), (row, col)
    # labelling from the mask itself is exact: a cell is positive iff its 4 x 4 block has tumour
    from_mask = tumour_cells_from_mask(mask, 32.0, cells.grid)
    blocks = padded[1 : 1 + rows * 4, 1 : 1 + cols * 4].reshape(rows, 4, cols, 4).any(axis=(1, 3))
    assert np.array_equal(from_mask, blocks)
    # the XML and the mask come from the same polygons: they agree on all but boundary cells
    xml_cells = tumour_cells_from_annotations(read_annotations(case.annotation_path), cells.grid)  # type: ignore[arg-type]
    assert (xml_cells != from_mask).sum() <= 0.25 * from_mask.sum()

    settings = MiningSettings(max_positives_per_slide=10, max_negatives_per_slide=10)
    chosen = choose_cells(cells, settings, np.random.default_rng(0))
    assert chosen.labels.tolist() == [1] * 10 + [0] * 10
    patches = read_cell_patches(case, cells.grid, chosen.cell_rc, settings)
    with open_slide(case.slide_path) as slide:
        plan = choose_read_plan(slide.info, 0.972)
        for i in (0, 9, 10, 19):
            x0, y0, x1, y1 = cells.grid.patch_px_box(tuple(chosen.cell_rc[i]))
            direct = slide.read_px_region(plan, (x0, y0), (x1 - x0, y1 - y0))
            assert np.array_equal(patches[i], direct)


def test_slide_split_never_puts_a_slide_on_both_sides() -> None:
    slides = {f"tumor_{i:03d}": True for i in range(7)} | {f"normal_{i:03d}": False for i in range(11)}
    split = split_slides(slides, valid_fraction=0.2, test_fraction=0.2, seed=4)
    sides = [set(split.train), set(split.valid), set(split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert set().union(*sides) == set(slides)
    for side in sides:  # stratified: every side holds tumour and normal slides
        assert any(s.startswith("tumor") for s in side) and any(s.startswith("normal") for s in side)
    assert split_slides(slides, 0.2, 0.2, seed=4) == split
    with pytest.raises(ConfigError, match="slide a is in both the train and valid splits"):
        SlideSplit(train=("a", "b"), valid=("a",))


def test_mining_splits_by_slide_balances_and_saves_pcam_layout(synth_dir: Path, tmp_path: Path) -> None:
    settings = MiningSettings(max_positives_per_slide=30, max_negatives_per_slide=60, valid_fraction=0.3, seed=2)
    data, summary = mine_training_data([synth_dir], settings, save_dir=tmp_path / "pcam")
    split = summary["mining"]["slide_split"]
    assert len(split["valid"]) == 1 and split["valid"][0].startswith("tumor")
    assert sorted(split["train"]) == sorted({"tumor_001", "tumor_002", "normal_001"} - set(split["valid"]))
    train_slides = set(data.train.slide_ids)  # type: ignore[attr-defined]
    valid_slides = set(data.valid.slide_ids)  # type: ignore[attr-defined]
    assert train_slides == set(split["train"]) and valid_slides == set(split["valid"])
    for source in (data.train, data.valid):
        n_pos = int(source.labels.sum())
        assert n_pos > 0 and int((source.labels == 0).sum()) == n_pos  # 1 negative per positive
    saved = read_pcam_folder(tmp_path / "pcam")
    assert np.array_equal(saved.train.labels, data.train.labels)
    assert np.array_equal(
        saved.valid.patches(np.arange(len(saved.valid))), data.valid.patches(np.arange(len(data.valid)))
    )
    assert list(saved.valid.slide_ids) == list(data.valid.slide_ids)  # type: ignore[attr-defined]


def test_balance_keeps_hard_negatives_first() -> None:
    # balance reads only labels and hard-negative counts, so no slide is needed
    chosen = [
        ChosenCells(None, np.zeros((14, 2), np.int64), np.array([1] * 4 + [0] * 10), n_hard_negatives=3),  # type: ignore[arg-type]
        ChosenCells(None, np.zeros((6, 2), np.int64), np.array([1] * 1 + [0] * 5), n_hard_negatives=0),  # type: ignore[arg-type]
    ]
    balanced = balance(chosen, 1.0, np.random.default_rng(0))
    assert sum(int(c.labels.sum()) for c in balanced) == 5
    assert sum(int((c.labels == 0).sum()) for c in balanced) == 5
    assert balanced[0].n_hard_negatives == 3
    assert balance(chosen, None, np.random.default_rng(0))[0].labels.tolist() == chosen[0].labels.tolist()


def test_hard_negatives_are_the_previous_models_most_confident_false_positives(synth_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "previous.safetensors"
    write_random_checkpoint(checkpoint, seed=3)
    hard = HardNegativeSettings(
        str(checkpoint), fraction=0.5, pool_per_slide=100_000, min_probability=0.0, device="cpu"
    )
    settings = MiningSettings(max_positives_per_slide=0, max_negatives_per_slide=40, hard_negatives=hard)
    case = next(c for c in find_slide_cases([synth_dir]) if c.slide_id == "normal_001")
    cells = label_slide(case, settings)
    score = predictor_scorer(settings)
    chosen = choose_cells(cells, settings, np.random.default_rng(0), score)
    assert chosen.n_hard_negatives == 20 and len(chosen.labels) == 40 and not chosen.labels.any()
    everything = cells.negative_rc
    probs = score(cells, everything)
    rank = {tuple(rc): p for rc, p in zip(everything.tolist(), probs.tolist())}
    hard_probs = sorted((rank[tuple(rc)] for rc in chosen.cell_rc[:20].tolist()), reverse=True)
    assert hard_probs == pytest.approx(sorted(probs.tolist(), reverse=True)[:20], abs=1e-6)
    assert len({tuple(rc) for rc in chosen.cell_rc.tolist()}) == 40  # no cell twice


def test_hard_negative_model_must_match_the_mining_geometry(tmp_path: Path) -> None:
    checkpoint = tmp_path / "m.safetensors"
    write_random_checkpoint(checkpoint, seed=0, mpp_um_px=0.5)
    settings = MiningSettings(hard_negatives=HardNegativeSettings(str(checkpoint), device="cpu"))
    with pytest.raises(ConfigError, match="0.5 um/px, but mining cuts 96 px at 0.972 um/px"):
        predictor_scorer(settings)


def test_label_rule_decides_which_grazed_cells_are_tumour():
    # a square over cells (1..3, 1..3) fully, and a sliver of 40% of each cell of column 4 and
    # of 60% of each cell of row 4 (cells are 128 level-0 px)
    square = np.array(
        [[128, 128], [4 * 128 + 0.4 * 128, 128], [4 * 128 + 0.4 * 128, 4 * 128 + 0.6 * 128], [128, 4 * 128 + 0.6 * 128]]
    )
    truth = SlideAnnotations(tumour=(Polygon("t", "Tumor", square),))
    any_rule = tumour_cells_from_annotations(truth, GRID)
    majority_grid = CellGrid(1280, 1280, 0.243, 0.972, PatchGeometry(label_rule="centre-majority"))
    majority = tumour_cells_from_annotations(truth, majority_grid)
    assert np.array_equal(np.argwhere(any_rule).min(0), [1, 1]) and np.array_equal(np.argwhere(any_rule).max(0), [4, 4])
    assert any_rule[4, 4] and any_rule[2, 4]  # any tumour pixel counts
    assert majority[4, 2] and not majority[2, 4]  # 60% of a cell counts, 40% does not
    assert np.count_nonzero(majority) == 4 * 3
