"""Heatmap stores over synthetic Camelyon16-like slides, for the diagnosis, export and evaluation
tests: a real Zarr store written with the store API (plan_slide / write_block / finalize_slide),
whose probabilities come from the slides' ground truth instead of a model.

The slides are laid out by `pcam_scan.synth` (the plan the slide renderer draws) and their
ground truth written by it (ASAP XML, level-5 mask TIFF, reference.csv), at Camelyon16's own
resolutions (0.243 and 0.226 um/px). The slide pixels are not rendered: nothing under test reads
them, and rendering four slides big enough for a macro-metastasis costs about 30 s on 2 cores.

A cell's probability is the fraction of its area that is tumour (ground truth rasterised at
8 x 8 points per cell) plus a little Gaussian noise, so a near-perfect scanner; `degraded` scales
tumour down and puts a bright false lesion on every normal slide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcam_scan.annotations import SlideAnnotations, rasterize_annotations
from pcam_scan.annotations.model import Polygon
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.store import HeatmapStore, RunIdentity, SlideRecord
from pcam_scan.synth import SlidePlan, SlideSpec, SynthSlide, plan_slide, write_ground_truth
from pcam_scan.synth.dataset import write_reference_csv

RUN = RunIdentity("sha256:ground-truth-heatmaps", {"source": "tests/store_cases.py"})
BLOCK_CELLS = 16
SUBSAMPLES = 8  # ground-truth points per cell side
NOISE_SD = 0.03
FALSE_LESION_CELLS = 6

# (reference name, slide spec, plan seed, tumour): the seeds give Test_001 a macro-metastasis
# with a normal island (an exclusion) and two ITC, Test_003 a micro-metastasis and an ITC.
SLIDES = (
    ("Test_001", SlideSpec(15000, 15000, 0.243), 10, True),
    ("Test_002", SlideSpec(6000, 5000, 0.243), 1, False),
    ("Test_003", SlideSpec(8000, 7000, 0.226), 6, True),
    ("Test_004", SlideSpec(6000, 5000, 0.226), 2, False),
)


@dataclass(frozen=True)
class Case:
    """One synthetic slide: its reference name, store id, plan, cell grid and truth per cell."""

    name: str
    plan: SlidePlan
    grid: CellGrid
    tissue: np.ndarray
    tumour_fraction: np.ndarray

    @property
    def slide_id(self) -> str:
        return self.name.lower()

    @property
    def is_tumour(self) -> bool:
        return self.plan.is_tumour


def cell_grid(spec: SlideSpec) -> CellGrid:
    # the heatmaps below are each cell's tumour fraction: at 0.5, the centre-majority label rule
    return CellGrid(spec.width_px, spec.height_px, spec.mpp_um_px, 0.972, PatchGeometry(label_rule="centre-majority"))


def l0_per_cell(grid: CellGrid) -> float:
    return grid.geometry.cell_px * grid.l0_per_px


def cell_fraction(annotations: SlideAnnotations, grid: CellGrid) -> np.ndarray:
    """Fraction of each cell that the annotations cover (tumour minus exclusions)."""
    rows, cols = grid.shape
    fine = rasterize_annotations(annotations, l0_per_cell(grid) / SUBSAMPLES, (rows * SUBSAMPLES, cols * SUBSAMPLES))
    return fine.reshape(rows, SUBSAMPLES, cols, SUBSAMPLES).mean(axis=(1, 3))


def make_case(name: str, spec: SlideSpec, seed: int, tumour: bool) -> Case:
    plan = plan_slide(spec, seed, tumour)
    grid = cell_grid(spec)
    fraction = cell_fraction(plan.annotations(), grid)
    pieces = tuple(Polygon(f"tissue {i}", "tissue", p) for i, p in enumerate(plan.tissue))
    tissue = rasterize_annotations(SlideAnnotations(tumour=pieces), l0_per_cell(grid), grid.shape)
    return Case(name, plan, grid, tissue | (fraction > 0), fraction)


def write_dataset(root: Path) -> list[Case]:
    """The cases' ground truth under `root` (annotations/, masks/, reference.csv)."""
    cases = [make_case(*slide) for slide in SLIDES]
    written = []
    for case in cases:
        slide = SynthSlide(case.name, root / f"{case.name}.tif", case.plan, level_wh=())
        if case.is_tumour:
            slide = write_ground_truth(
                slide,
                root / "annotations" / f"{case.name}.xml",
                root / "masks" / f"{case.name}_Mask.tif",
            )
        written.append(slide)
    write_reference_csv(root / "reference.csv", written)
    return cases


def near_perfect(case: Case, seed: int) -> np.ndarray:
    """Tumour fraction plus noise, NaN off tissue: what a very good scanner would give."""
    rng = np.random.default_rng(seed)
    noisy = case.tumour_fraction + rng.normal(0.0, NOISE_SD, case.grid.shape)
    return np.where(case.tissue, np.clip(noisy, 0.0, 1.0), np.nan).astype(np.float32)


def degraded(case: Case, seed: int) -> np.ndarray:
    """Tumour at 55% strength; on a normal slide a bright 6 x 6 cell false lesion in tissue."""
    prob = near_perfect(case, seed)
    prob = np.where(case.tumour_fraction > 0, prob * 0.55, prob).astype(np.float32)
    if not case.is_tumour:
        rows, cols = np.nonzero(case.tissue)
        row, col = int(np.median(rows)), int(np.median(cols))
        block = (slice(row, row + FALSE_LESION_CELLS), slice(col, col + FALSE_LESION_CELLS))
        prob[block] = np.where(case.tissue[block], 0.9, np.nan)
    return prob


def write_slide(store: HeatmapStore, case: Case, prob: np.ndarray) -> None:
    """Plan, write every block, finalize: the store API as a scan uses it."""
    record = SlideRecord(path=f"{case.name}.tif", fingerprint=f"synthetic:{case.plan.seed}")
    store.plan_slide(case.slide_id, record, case.grid, case.tissue, BLOCK_CELLS)
    for block in store.pending_blocks(case.slide_id):
        store.write_block(case.slide_id, block, prob[block.cell_slices()])
    store.finalize_slide(case.slide_id, {"read": 0.0, "predict": 0.0, "write": 0.0})


def build_store(path: Path, cases: list[Case], heatmap: str = "near_perfect") -> HeatmapStore:
    """A store with every case complete (`heatmap`: near_perfect or degraded)."""
    make = {"near_perfect": near_perfect, "degraded": degraded}[heatmap]
    store = HeatmapStore.open(str(path), RUN, mode="a")
    for index, case in enumerate(cases):
        write_slide(store, case, make(case, seed=index))
    return store
