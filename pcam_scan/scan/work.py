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
from pcam_scan.geometry import Block
from pcam_scan.qc.block import BlockQc, measure_block
from pcam_scan.scan.planning import PlanFailure, SlidePlan, plan_into_store
from pcam_scan.scan.reading import read_block_region, scatter_block_probs
from pcam_scan.scan.settings import ScanRun, ScanSettings
from pcam_scan.slide import ReadPlan, Slide, open_slide
from pcam_scan.stain import StainNormaliser
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


@dataclass(frozen=True)
class BlockRead:
    """A block as read: the region for the model (stain-normalised when the run asks) and the
    block's QC, measured on the raw pixels (None with QC off, or when the read failed), or the
    error that stopped it; `seconds` is the read, the QC and the normalisation together."""

    work: BlockWork
    region: np.ndarray | None = field(repr=False)
    qc: BlockQc | None
    seconds: float
    error: str | None = None


def read_works(works: Iterable[BlockWork], run: ScanRun) -> Iterator[BlockRead]:
    """Each work item read, one slide open at a time: its region, QC measured on the pixels as
    read, then (with the run's stain target) the region stain-normalised for the model
    (`pcam_scan.stain`). QC judges the slide, not the model's view of it: ink, folds and focus are
    measured on raw colour, so normalisation cannot move a flag.

    A read that fails yields the error text instead of a region, so one bad slide does not stop
    the others (the error becomes that slide's failed status).
    """
    open_path: str | None = None
    slide: Slide | None = None
    normalise = None if run.stain is None else StainNormaliser(run.stain)
    try:
        for work in works:
            started = time.perf_counter()
            try:
                if slide is None or work.path != open_path:
                    if slide is not None:
                        slide.close()
                    slide, open_path = None, work.path
                    slide = open_slide(work.path, work.mpp_override_um_px, work.slide_backend)
                raw = read_block_region(slide, work.read_plan, run.geometry, work.block)
                qc = block_qc(work, raw, run)
                region = raw if normalise is None else normalise(raw)
            except Exception as err:  # recorded as the slide's failure, never swallowed
                yield BlockRead(work, None, None, time.perf_counter() - started, describe_error(err))
                continue
            yield BlockRead(work, region, qc, time.perf_counter() - started)
    finally:
        if slide is not None:
            slide.close()


def block_qc(work: BlockWork, raw: np.ndarray, run: ScanRun) -> BlockQc | None:
    """The block's QC from the region read for its patches, as read (no other read, no stain
    normalisation); None with QC off."""
    if run.settings.qc is None:
        return None
    geometry = run.geometry
    return measure_block(raw, work.tissue, geometry.halo_px, geometry.cell_px, work.eosin_reference, run.settings.qc)


def write_work(writer: ProbChunkWriter, work: BlockWork, probs: np.ndarray, qc: BlockQc | None = None) -> float:
    """Write a block's probabilities (and its QC) as its one chunk each; returns the seconds."""
    started = time.perf_counter()
    writer.write(work.block, scatter_block_probs(work.block, work.tissue, probs), qc)
    return time.perf_counter() - started
