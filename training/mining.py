"""Source (c): labelled patches mined from whole slides and their annotations, at the model's
um/px, split by slide.

Per slide (cheap, no patch read): the cell grid at the model's geometry, the tissue cells
(`detect_tissue`), and the cells that touch tumour (`cell_labels`). Positives are tissue cells
that touch tumour; negatives are the other tissue cells of tumour slides and every tissue cell of
normal slides. Slides are split first (by slide, stratified), then each slide's cells are sampled
(per-slide caps, optionally hard negatives from a previous model), then each split's negatives
are thinned to a ratio of its positives, and only then are the chosen patches read: one region
per block of cells, cut with `cut_patches`, as the scanner reads them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pcam_scan import defaults
from pcam_scan.annotations import read_annotations
from pcam_scan.annotations.cell_labels import tumour_cells_from_annotations, tumour_cells_from_mask, tumour_in_patch
from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.mask import EVALUATION_LEVEL, read_tumour_mask_tiff
from pcam_scan.geometry import CellGrid, PatchGeometry, plan_blocks
from pcam_scan.model.patch_cutting import cut_patches
from pcam_scan.scan.reading import read_block_region
from pcam_scan.slide import choose_read_plan, open_slide, plan_grid
from pcam_scan.tissue import TissueSettings, detect_tissue
from pcam_scan.validation import check_seed
from training.pcam_h5 import PatchMeta
from training.slide_cases import SlideCase
from training.sources import ArraySource
from training.splits import SlideSplit, split_slides

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HardNegativeSettings:
    """Take part of each slide's negatives from a previous model's false positives.

    A random pool of up to `pool_per_slide` negative cells is scored; those with
    P(tumour) >= `min_probability`, highest first, fill up to `fraction` of the slide's negatives.
    """

    checkpoint: str
    fraction: float = defaults.HARD_NEGATIVE_FRACTION
    pool_per_slide: int = defaults.HARD_NEGATIVE_POOL_PER_SLIDE
    min_probability: float = defaults.HARD_NEGATIVE_MIN_PROBABILITY
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"hard-negative fraction {self.fraction} must lie in (0, 1]")
        if self.pool_per_slide < 1:
            raise ConfigError("hard-negative pool per slide must be at least 1")
        if not 0.0 <= self.min_probability < 1.0:
            raise ConfigError(f"hard-negative min probability {self.min_probability} must lie in [0, 1)")


@dataclass(frozen=True)
class MiningSettings:
    """How patches are mined; `negatives_per_positive` None keeps every sampled negative."""

    geometry: PatchGeometry = PatchGeometry()
    max_positives_per_slide: int = defaults.MAX_POSITIVES_PER_SLIDE
    max_negatives_per_slide: int = defaults.MAX_NEGATIVES_PER_SLIDE
    negatives_per_positive: float | None = defaults.NEGATIVES_PER_POSITIVE
    valid_fraction: float = defaults.VALID_FRACTION
    test_fraction: float = 0.0
    block_cells: int = 8
    seed: int = 0
    tissue: TissueSettings = field(default_factory=TissueSettings)
    hard_negatives: HardNegativeSettings | None = None
    mpp_override_um_px: float | None = None

    def __post_init__(self) -> None:
        if self.max_positives_per_slide < 0 or self.max_negatives_per_slide < 0:
            raise ConfigError("per-slide patch caps must not be negative")
        if self.max_positives_per_slide + self.max_negatives_per_slide == 0:
            raise ConfigError("per-slide caps of 0 positives and 0 negatives mine nothing")
        ratio = self.negatives_per_positive
        if ratio is not None and not (math.isfinite(ratio) and ratio > 0):
            raise ConfigError(f"negatives per positive {ratio} must be a finite number > 0 (or 0 / None to keep all)")
        check_seed("--seed", self.seed)
        if not 1 <= self.block_cells <= 64:
            raise ConfigError(f"block size {self.block_cells} cells must lie in 1..64")


@dataclass(frozen=True)
class SlideCells:
    """A slide's cell grid, tissue cells and tumour cells (both boolean, grid-shaped)."""

    case: SlideCase
    grid: CellGrid
    tissue: np.ndarray
    tumour: np.ndarray

    @property
    def positive_rc(self) -> np.ndarray:
        return np.argwhere(self.tissue & self.tumour)

    @property
    def negative_rc(self) -> np.ndarray:
        return np.argwhere(self.tissue & ~self.tumour)


@dataclass(frozen=True)
class ChosenCells:
    """The cells taken from one slide, labels alongside (1 tumour, 0 normal)."""

    cells: SlideCells
    cell_rc: np.ndarray
    labels: np.ndarray
    n_hard_negatives: int = 0


@dataclass(frozen=True)
class MinedSplit:
    """The patches of one split with their labels and where they came from."""

    x: np.ndarray
    meta: tuple[PatchMeta, ...]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([m.label for m in self.meta], dtype=np.int64)

    @property
    def slide_ids(self) -> list[str]:
        return [m.slide_id for m in self.meta]

    def source(self) -> ArraySource:
        return ArraySource(self.x, self.labels, self.slide_ids)


@dataclass(frozen=True)
class MinedData:
    """Every split's patches, the slide split, and per-slide counts for the report."""

    splits: dict[str, MinedSplit]
    slide_split: SlideSplit
    per_slide: dict[str, dict[str, int | str]]


def label_slide(case: SlideCase, settings: MiningSettings) -> SlideCells:
    """Grid, tissue and tumour cells of one slide at the settings' geometry (no patch read)."""
    with open_slide(case.slide_path, settings.mpp_override_um_px) as slide:
        info = slide.info
        _, grid = plan_grid(info, settings.geometry)
        tissue = detect_tissue(slide, grid, settings.tissue).cells
    if case.annotation_path is not None:
        tumour = tumour_cells_from_annotations(read_annotations(case.annotation_path), grid)
    elif case.mask_path is not None:
        mask = read_tumour_mask_tiff(case.mask_path, EVALUATION_LEVEL)
        tumour = tumour_cells_from_mask(mask, float(2**EVALUATION_LEVEL), grid)
    else:
        tumour = np.zeros(grid.shape, dtype=bool)
    if case.is_tumour and not (tissue & tumour).any():
        log.warning("%s: no tissue cell touches its annotated tumour", case.slide_id)
    return SlideCells(case=case, grid=grid, tissue=tissue, tumour=tumour)


def _sample(rc: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(rc) <= n:
        return rc
    return rc[np.sort(rng.choice(len(rc), size=n, replace=False))]


HardNegativeScorer = Callable[[SlideCells, np.ndarray], np.ndarray]
"""P(tumour) of the patches centred on the given cells of a slide (a previous model)."""


def choose_cells(
    cells: SlideCells,
    settings: MiningSettings,
    rng: np.random.Generator,
    score: HardNegativeScorer | None = None,
) -> ChosenCells:
    """A slide's positives and negatives within the per-slide caps (hard negatives first)."""
    positives = _sample(cells.positive_rc, settings.max_positives_per_slide, rng)
    candidates = cells.negative_rc
    n_negative = min(len(candidates), settings.max_negatives_per_slide)
    hard = np.zeros((0, 2), dtype=np.int64)
    hard_cfg = settings.hard_negatives
    if score is not None and hard_cfg is not None and n_negative:
        pool = _sample(candidates, hard_cfg.pool_per_slide, rng)
        probs = score(cells, pool)
        order = np.argsort(-probs, kind="stable")
        confident = order[probs[order] >= hard_cfg.min_probability]
        hard = pool[confident[: round(hard_cfg.fraction * n_negative)]]
    rest = candidates
    if len(hard):
        taken = {tuple(rc) for rc in hard.tolist()}
        rest = np.asarray([rc for rc in candidates.tolist() if tuple(rc) not in taken], dtype=np.int64).reshape(-1, 2)
    negatives = np.concatenate([hard, _sample(rest, n_negative - len(hard), rng)]).astype(np.int64)
    cell_rc = np.concatenate([positives, negatives]).astype(np.int64).reshape(-1, 2)
    labels = np.concatenate([np.ones(len(positives), np.int64), np.zeros(len(negatives), np.int64)])
    return ChosenCells(cells, cell_rc, labels, n_hard_negatives=len(hard))


def balance(chosen: Sequence[ChosenCells], ratio: float | None, rng: np.random.Generator) -> list[ChosenCells]:
    """Thin the negatives of a split to `ratio` per positive (hard negatives are kept first)."""
    n_pos = sum(int(c.labels.sum()) for c in chosen)
    n_neg = sum(int((c.labels == 0).sum()) for c in chosen)
    if ratio is None or n_neg <= ratio * n_pos:
        return list(chosen)
    keep_total = round(ratio * n_pos)
    # every negative gets a random key, hard negatives one below every easy negative's key,
    # and the `keep_total` smallest keys stay
    keys = [rng.random(int((c.labels == 0).sum())) + 1.0 for c in chosen]
    for c, k in zip(chosen, keys):
        k[: c.n_hard_negatives] -= 1.0
    threshold = np.sort(np.concatenate(keys))[keep_total - 1] if keep_total else -np.inf
    out = []
    for c, k in zip(chosen, keys):
        n_pos_slide = int(c.labels.sum())
        keep_neg = k <= threshold
        keep = np.concatenate([np.ones(n_pos_slide, bool), keep_neg])
        out.append(ChosenCells(c.cells, c.cell_rc[keep], c.labels[keep], int(keep_neg[: c.n_hard_negatives].sum())))
    return out


def read_cell_patches(case: SlideCase, grid: CellGrid, cell_rc: np.ndarray, settings: MiningSettings) -> np.ndarray:
    """uint8 (N, P, P, 3) patches centred on `cell_rc`, in that order, one read per block."""
    geometry = settings.geometry
    out = np.empty((len(cell_rc), geometry.patch_px, geometry.patch_px, 3), dtype=np.uint8)
    if not len(cell_rc):
        return out
    wanted = np.full(grid.shape, -1, dtype=np.int64)
    wanted[cell_rc[:, 0], cell_rc[:, 1]] = np.arange(len(cell_rc))
    with open_slide(case.slide_path, settings.mpp_override_um_px) as slide:
        plan = choose_read_plan(slide.info, geometry.mpp_um_px)
        for block in plan_blocks(grid, wanted >= 0, settings.block_cells):
            region = read_block_region(slide, plan, geometry, block)
            patches = cut_patches(region, block, geometry)
            index = wanted[block.cell_slices()]
            inside = index >= 0
            out[index[inside]] = patches[inside]
    return out


def _meta(chosen: ChosenCells) -> list[PatchMeta]:
    cells = chosen.cells
    near_tumour = tumour_in_patch(cells.tumour, cells.grid)
    rows = []
    for (row, col), label in zip(chosen.cell_rc.tolist(), chosen.labels.tolist()):
        l0_x, l0_y, _, _ = cells.grid.patch_l0_box((row, col))
        rows.append(PatchMeta(round(l0_x), round(l0_y), bool(near_tumour[row, col]), int(label), cells.case.slide_id))
    return rows


def mine_slides(
    cases: Sequence[SlideCase],
    settings: MiningSettings,
    score: HardNegativeScorer | None = None,
) -> MinedData:
    """Label, split by slide, sample, balance and read: the mined train / valid (/ test) splits."""
    if settings.hard_negatives is not None and score is None:
        raise ConfigError("hard-negative mining needs a scorer (a previous model)")
    labelled = {case.slide_id: label_slide(case, settings) for case in cases}
    slide_split = split_slides(
        {sid: c.case.is_tumour for sid, c in labelled.items()},
        settings.valid_fraction,
        settings.test_fraction,
        settings.seed,
    )
    rng = np.random.default_rng(settings.seed)
    splits: dict[str, MinedSplit] = {}
    per_slide: dict[str, dict[str, int | str]] = {}
    for side in ("train", "valid", "test"):
        ids = getattr(slide_split, side)
        if not ids:
            continue
        chosen = [choose_cells(labelled[sid], settings, rng, score) for sid in ids]
        chosen = balance(chosen, settings.negatives_per_positive, rng)
        xs, meta = [], []
        for c in chosen:
            xs.append(read_cell_patches(c.cells.case, c.cells.grid, c.cell_rc, settings))
            meta += _meta(c)
            per_slide[c.cells.case.slide_id] = {
                "split": side,
                "tissue_cells": int(c.cells.tissue.sum()),
                "tumour_cells": int((c.cells.tissue & c.cells.tumour).sum()),
                "positives": int(c.labels.sum()),
                "negatives": int((c.labels == 0).sum()),
                "hard_negatives": c.n_hard_negatives,
            }
        empty = np.zeros((0, settings.geometry.patch_px, settings.geometry.patch_px, 3), np.uint8)
        splits[side] = MinedSplit(np.concatenate(xs) if xs else empty, tuple(meta))
    return MinedData(splits=splits, slide_split=slide_split, per_slide=per_slide)
