"""Units of scanning work and their results: what crosses process (and Ray) boundaries.

A `BlockWork` is self-contained (slide path, read plan, block, its tissue cells): a worker needs
nothing else to read it, so no open slide and no whole tissue grid is ever shipped around.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from pcam_scan.errors import describe_error
from pcam_scan.geometry import Block, PatchGeometry
from pcam_scan.qc.block import BlockQc, measure_block
from pcam_scan.scan.planning import PlanFailure, SlidePlan, plan_into_store
from pcam_scan.scan.reading import read_block_region, scatter_block_probs
from pcam_scan.scan.settings import ScanRun, ScanSettings
from pcam_scan.slide import ReadPlan, Slide, open_slide
from pcam_scan.stain import StainNormaliser, StainTarget
from pcam_scan.store import HeatmapStore
from pcam_scan.store.prob_chunks import ProbChunkWriter


@dataclass(frozen=True)
class BlockWork:
    """One block of one slide to read, predict and write."""

    slide_id: str
    path: str
    mpp_override_um_px: float | None
    slide_backend: str
    read_plan: ReadPlan
    block: Block
    tissue: np.ndarray = field(repr=False)
    eosin_reference: float = 0.0
    """The slide's typical tissue eosin density (planning thumbnail): QC's fold reference."""

    @property
    def n_patches(self) -> int:
        return int(np.count_nonzero(self.tissue))


@dataclass(frozen=True)
class BlockResult:
    """What became of one block: counts, per-stage seconds, or the error that stopped it."""

    slide_id: str
    block_rc: tuple[int, int]
    n_patches: int
    read_s: float = 0.0
    predict_s: float = 0.0
    write_s: float = 0.0
    error: str | None = None
    model: tuple[str, int, int] | None = None
    """The model worker that scored it and its running totals: (worker, batches, real patches)."""


@dataclass(frozen=True)
class SlideReady:
    """A slide as its planning left it, for the driver: failed (`failure` says why), complete from
    an earlier run, or planned with `n_pending` of its `n_blocks` blocks (`n_patches` patches)
    still to scan. Small: it travels through the pipeline beside the slide's block rows."""

    slide_id: str
    path: str
    failure: str | None = None
    complete: bool = False
    n_blocks: int = 0
    n_pending: int = 0
    n_patches: int = 0
    plan_s: float = 0.0


def plan_slide_work(slide_id: str, path: str, run: ScanRun, store: HeatmapStore) -> tuple[SlideReady, list[BlockWork]]:
    """Plan one slide into the store (where this runs: a Ray task, not the driver) and turn its
    pending blocks into work items, so they can enter the pipeline while other slides plan."""
    planned = plan_into_store(slide_id, path, run, store)
    if isinstance(planned, PlanFailure):
        return SlideReady(slide_id, path, failure=planned.message), []
    works = block_work_items(planned.plan, planned.pending, run.settings)
    ready = SlideReady(
        slide_id,
        path,
        complete=planned.complete,
        n_blocks=len(planned.plan.blocks),
        n_pending=len(works),
        n_patches=sum(work.n_patches for work in works),
        plan_s=planned.plan.plan_seconds,
    )
    return ready, works


def block_work_items(plan: SlidePlan, blocks: Iterable[Block], settings: ScanSettings) -> list[BlockWork]:
    """The work items of a slide's pending blocks."""
    return [
        BlockWork(
            slide_id=plan.slide_id,
            path=plan.path,
            mpp_override_um_px=settings.mpp_override_um_px,
            slide_backend=settings.slide_backend,
            read_plan=plan.read_plan,
            block=block,
            tissue=np.ascontiguousarray(plan.tissue.cells[block.cell_slices()]),
            eosin_reference=plan.tissue.eosin_reference,
        )
        for block in blocks
    ]


def read_works(
    works: Iterable[BlockWork], geometry: PatchGeometry, stain: StainTarget | None = None
) -> Iterator[tuple[BlockWork, np.ndarray | None, float, str | None]]:
    """The region of each work item, `(work, region, seconds, error)`, one slide open at a time;
    with a `stain` target each region is stain-normalised as read (`pcam_scan.stain`).

    A read that fails yields the error text instead of a region, so one bad slide does not stop
    the others (the error becomes that slide's failed status).
    """
    open_path: str | None = None
    slide: Slide | None = None
    normalise = None if stain is None else StainNormaliser(stain)
    try:
        for work in works:
            started = time.perf_counter()
            try:
                if slide is None or work.path != open_path:
                    if slide is not None:
                        slide.close()
                    slide, open_path = None, work.path
                    slide = open_slide(work.path, work.mpp_override_um_px, work.slide_backend)
                region = read_block_region(slide, work.read_plan, geometry, work.block)
                if normalise is not None:
                    region = normalise(region)
            except Exception as err:  # recorded as the slide's failure, never swallowed
                yield work, None, time.perf_counter() - started, describe_error(err)
                continue
            yield work, region, time.perf_counter() - started, None
    finally:
        if slide is not None:
            slide.close()


def block_qc(work: BlockWork, region: np.ndarray, run: ScanRun) -> BlockQc | None:
    """The block's QC from the region read for its patches (no other read); None with QC off."""
    if run.settings.qc is None:
        return None
    geometry = run.geometry
    return measure_block(region, work.tissue, geometry.halo_px, geometry.cell_px, work.eosin_reference, run.settings.qc)


def write_work(writer: ProbChunkWriter, work: BlockWork, probs: np.ndarray, qc: BlockQc | None = None) -> float:
    """Write a block's probabilities (and its QC) as its one chunk each; returns the seconds."""
    started = time.perf_counter()
    writer.write(work.block, scatter_block_probs(work.block, work.tissue, probs), qc)
    return time.perf_counter() - started
