"""Plan a slide: open it, check its MPP, choose the read plane, find tissue, list the blocks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pcam_scan.errors import PcamScanError, SlideError, describe_error
from pcam_scan.geometry import Block, CellGrid, plan_blocks
from pcam_scan.scan.settings import ScanRun
from pcam_scan.slide import ReadPlan, SlideInfo, open_slide, plan_grid
from pcam_scan.store import HeatmapStore, SlideRecord, SlideState, slide_fingerprint
from pcam_scan.tissue import TissueGrid, detect_tissue


@dataclass(frozen=True)
class SlidePlan:
    """Everything a worker needs to read a slide's blocks; small enough to ship through Ray."""

    slide_id: str
    path: str
    info: SlideInfo
    read_plan: ReadPlan
    grid: CellGrid
    tissue: TissueGrid
    blocks: tuple[Block, ...]
    plan_seconds: float

    @property
    def n_patches(self) -> int:
        return int(sum(self.tissue.cells[b.cell_slices()].sum() for b in self.blocks))


def check_holds_a_patch(path: str, grid: CellGrid) -> None:
    """Refuse a slide narrower or shorter than one patch at the model's MPP (a 50 x 50 px DICOM
    test image): no patch fits on it, and a heatmap of white padding would pass for a negative."""
    patch_px = grid.geometry.patch_px
    if grid.px_width < patch_px or grid.px_height < patch_px:
        patch_um = patch_px * grid.px_mpp_um_px
        raise SlideError(
            f"{path}: {grid.l0_width} x {grid.l0_height} px at {grid.slide_mpp_um_px:g} um/px is smaller than "
            f"one {patch_px} px patch at {grid.px_mpp_um_px:g} um/px ({patch_um:.0f} um a side); nothing to scan"
        )


def plan_slide(slide_id: str, path: str, run: ScanRun) -> SlidePlan:
    """Open the slide, choose how to read it at the model's MPP, and plan its tissue blocks."""
    started = time.perf_counter()
    geometry, settings = run.geometry, run.settings
    with open_slide(path, settings.mpp_override_um_px, settings.slide_backend) as slide:
        slide.check_readable()
        read_plan, grid = plan_grid(slide.info, geometry)
        check_holds_a_patch(path, grid)
        tissue = detect_tissue(slide, grid, settings.tissue)
        info = slide.info
    blocks = tuple(plan_blocks(grid, tissue.cells, settings.block_cells))
    return SlidePlan(
        slide_id=slide_id,
        path=str(path),
        info=info,
        read_plan=read_plan,
        grid=grid,
        tissue=tissue,
        blocks=blocks,
        plan_seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class PlannedSlide:
    """A slide planned and set up in the store: its plan, and the blocks still to scan (none
    when `complete`, a slide finished by an earlier run)."""

    plan: SlidePlan
    pending: tuple[Block, ...]
    complete: bool


@dataclass(frozen=True)
class PlanFailure:
    """Why a slide could not be planned: one line, recorded as the slide's failed status."""

    message: str


def plan_or_failure(slide_id: str, path: str, run: ScanRun) -> SlidePlan | PlanFailure:
    """The slide's plan, or why it cannot be scanned: a bad slide is recorded as failed and the
    batch goes on, in process and on Ray alike."""
    try:
        return plan_slide(slide_id, path, run)
    except Exception as err:  # becomes the slide's failed status, never swallowed
        return PlanFailure(describe_error(err))


def plan_into_store(slide_id: str, path: str, run: ScanRun, store: HeatmapStore) -> PlannedSlide | PlanFailure:
    """Plan the slide and set it up in the store where the plan is made (a Ray task, not the
    driver): arrays created, tissue written whole, status planned; or resumed, keeping its
    written blocks. A slide that cannot be planned or resumed becomes a `PlanFailure`."""
    plan = plan_or_failure(slide_id, path, run)
    if isinstance(plan, PlanFailure):
        return plan
    try:
        record = SlideRecord(path=path, fingerprint=slide_fingerprint(path), backend=plan.info.backend)
        qc = run.settings.qc
        status = store.plan_slide(
            slide_id,
            record,
            plan.grid,
            plan.tissue.cells,
            run.settings.block_cells,
            qc.to_dict() if qc is not None else None,
        )
        if status.state is SlideState.COMPLETE:
            return PlannedSlide(plan, (), complete=True)
        return PlannedSlide(plan, tuple(store.pending_blocks(slide_id)), complete=False)
    except PcamScanError as err:
        return PlanFailure(describe_error(err))
