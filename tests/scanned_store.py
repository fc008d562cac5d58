"""A real heatmap store over real synthetic slides, for the viewer and render tests.

The Ray scanner is not involved: each slide is planned with the scanner's own planning (OpenSlide
read, tissue detection, blocks), every block gets probabilities computed from the slide's ground
truth (0.95 in cells whose centre lies in a lesion, 0.05 elsewhere on tissue, NaN off tissue),
the slide is finalized (pyramid, status) and diagnosed with the default rule, all through the
store's public API. So the tests know exactly where the heatmap must be coloured.

The slide is 0.75 um/px, so the read plane (0.972 um/px) is not a pyramid level and one cell is
41.472 level-0 px: a viewer that guessed the cell size from integer ratios would be caught.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcam_scan.annotations.rasterize import rasterize_annotations
from pcam_scan.diagnosis import DefaultRule, diagnose_heatmap
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.scan.planning import plan_slide
from pcam_scan.scan.settings import ModelRef, ScanRun, ScanSettings
from pcam_scan.store import HeatmapStore, RunIdentity, SlideRecord, slide_fingerprint
from pcam_scan.store.pyramid import DEFAULT_TOP_CELLS
from pcam_scan.synth import SlideSpec, SynthSlide, write_synthetic_slide

MPP_UM_PX = 0.75
SPEC = SlideSpec(width_px=2400, height_px=1800, mpp_um_px=MPP_UM_PX)
TUMOUR_PROB = 0.95
NORMAL_PROB = 0.05
RUN = RunIdentity("sha256-test-model", {"stride_px": 32, "source": "ground truth"})
BLOCK_CELLS = 16


@dataclass(frozen=True)
class ScannedSlide:
    slide: SynthSlide
    grid: CellGrid
    tissue: np.ndarray
    prob: np.ndarray

    @property
    def slide_id(self) -> str:
        return self.slide.name

    def cells(self, value: float) -> list[tuple[int, int]]:
        """(row, col) of cells with this probability whose 8 neighbours all have it too: deep
        inside a lesion (TUMOUR_PROB) or deep inside normal tissue (NORMAL_PROB)."""
        same = np.isclose(np.nan_to_num(self.prob, nan=-1.0), value)
        inner = same.copy()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                inner[1:-1, 1:-1] &= same[1 + dr : same.shape[0] - 1 + dr, 1 + dc : same.shape[1] - 1 + dc]
        inner[[0, -1], :] = False
        inner[:, [0, -1]] = False
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(inner))]


def truth_probabilities(slide: SynthSlide, grid: CellGrid, tissue: np.ndarray) -> np.ndarray:
    """The ideal heatmap: lesion cells (centre inside the annotation) 0.95, other tissue 0.05."""
    l0_per_cell = grid.l0_per_px * grid.geometry.cell_px
    lesion = rasterize_annotations(slide.annotations, l0_per_cell, grid.shape)
    prob = np.where(lesion, TUMOUR_PROB, NORMAL_PROB).astype(np.float32)
    return np.where(tissue | lesion, prob, np.nan).astype(np.float32)


def scan_into(store: HeatmapStore, slide: SynthSlide, top_cells: int = DEFAULT_TOP_CELLS) -> ScannedSlide:
    """Plan, write every block, finalize (pyramid up to `top_cells`) and diagnose one slide in `store`."""
    run = ScanRun.resolve(ScanSettings(block_cells=BLOCK_CELLS), ModelRef("", "planning-only"), PatchGeometry())
    plan = plan_slide(slide.name, str(slide.path), run)
    # the ideal heatmap lights the cells whose centre lies in the lesion: the majority rule
    grid = dataclasses.replace(
        plan.grid, geometry=dataclasses.replace(plan.grid.geometry, label_rule="centre-majority")
    )
    tissue = plan.tissue.cells
    prob = truth_probabilities(slide, grid, tissue)
    tissue = tissue | np.isfinite(prob)
    record = SlideRecord(str(slide.path), slide_fingerprint(slide.path))
    store.plan_slide(slide.name, record, grid, tissue, BLOCK_CELLS)
    for block in store.pending_blocks(slide.name):
        store.write_block(slide.name, block, prob[block.cell_slices()])
    store.finalize_slide(slide.name, {"predict": 1.0}, top_cells=top_cells)
    diagnosis = diagnose_heatmap(prob, tissue, grid, DefaultRule())
    store.set_diagnosis(slide.name, diagnosis.to_attrs())
    return ScannedSlide(slide, grid, tissue, prob)


def build_store(
    folder: Path,
    tumour_seeds: tuple[int, ...] = (7,),
    normal_seeds: tuple[int, ...] = (),
    top_cells: int = DEFAULT_TOP_CELLS,
) -> tuple[Path, list[ScannedSlide]]:
    """Synthetic slides in `folder/slides`, scanned into `folder/run.zarr` (pyramids up to `top_cells`)."""
    slides_dir = folder / "slides"
    slides_dir.mkdir(parents=True, exist_ok=True)
    synth = [
        write_synthetic_slide(slides_dir / f"tumor_{i + 1:03d}.tif", SPEC, seed, tumour=True)
        for i, seed in enumerate(tumour_seeds)
    ] + [
        write_synthetic_slide(slides_dir / f"normal_{i + 1:03d}.tif", SPEC, seed, tumour=False)
        for i, seed in enumerate(normal_seeds)
    ]
    store_path = folder / "run.zarr"
    store = HeatmapStore.open(str(store_path), RUN, mode="a")
    return store_path, [scan_into(store, slide, top_cells) for slide in synth]


def scan_inked_slide(folder: Path, model: Path, colour: str) -> Path:
    """A normal synthetic slide (`normal_001`) with two marker strokes of `colour`, written to
    `folder/slides` (true QC masks in `folder/slides/qc`) and scanned with QC by the real scanner
    in process into `folder/qc.zarr`, which is returned."""
    from pcam_scan.cli import main
    from pcam_scan.synth import SynthSpec, write_synthetic_dataset
    from pcam_scan.synth.artefacts import ArtefactSpec

    spec = SynthSpec(
        SlideSpec(width_px=2400, height_px=2200, mpp_um_px=0.486),
        0,
        1,
        seed=4,
        artefacts=ArtefactSpec(ink_strokes=2, ink_colours=(colour,)),
    )
    write_synthetic_dataset(folder / "slides", spec)
    store = folder / "qc.zarr"
    argv = ["scan", str(folder / "slides"), "--model", str(model), "--store", str(store)]
    if main([*argv, "--in-process", "--device", "cpu"]) != 0:
        raise AssertionError(f"the scan of {folder / 'slides'} failed")
    return store
