"""The heatmap store of one run: open/create it, plan slides, write blocks, finalize, fail.

Write order, so that nothing is ever taken as done before it is written whole:
1. plan: arrays created, tissue written, then the slide attributes with status `planned`;
2. each block: its `prob/0` chunk, then its `blocks_done` chunk (see blocks.py);
3. finalize: every planned block must be done; pyramid levels and their OME metadata are
   written, then counts, timings and status `complete` in one final attribute write.
A crash anywhere leaves a slide that is re-planned (no `planned` status yet) or resumed (the done
blocks are kept; the pyramid and status are rewritten by the next finalize).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, SupportsFloat, cast

import numpy as np
import numpy.typing as npt
import zarr
from zarr.core.group import GroupMetadata
from zarr.errors import ContainsArrayAndGroupError, ContainsArrayError, NodeNotFoundError
from zarr.storage import MemoryStore

from pcam_scan.errors import StoreError
from pcam_scan.geometry import Block, CellGrid, block_grid_shape, plan_blocks
from pcam_scan.qc.flags import slide_flags
from pcam_scan.qc.settings import QcSettings
from pcam_scan.qc.verdict import slide_verdict
from pcam_scan.store.guarded_store import ReadIsolation
from pcam_scan.store.identity import RunIdentity, json_copy
from pcam_scan.store.ids import validate_slide_id
from pcam_scan.store.location import StoreLocation, child_array, child_group, write_attr
from pcam_scan.store.ngff import AXES, multiscales_attrs
from pcam_scan.store.prob_chunks import ProbChunkWriter
from pcam_scan.store.pyramid import DEFAULT_TOP_CELLS, POOLINGS, Pooling, build_flag_pyramid, build_pyramid
from pcam_scan.store.reader import HeatmapReader
from pcam_scan.store.schema import (
    ATTRS_KEY,
    BLOCKS_DONE,
    FOCUS,
    P_OME,
    PROB,
    QC_FLAGS,
    TISSUE,
    PyramidRecord,
    SlideAttrs,
    SlideRecord,
    SlideState,
    SlideStatus,
    StoredSlide,
    check_root_attrs,
    completed_attrs,
    computed_counts,
    diagnosis_attrs,
    failed_attrs,
    finite_numbers,
    planned_attrs,
    qc_planned_attrs,
    qc_record,
    replanned_attrs,
    root_attrs,
    root_format_version,
)

OpenMode = Literal["r", "r+", "a"]
PYRAMID_CHUNK_CELLS = 256


class HeatmapStore(HeatmapReader):
    """One store per run target; one group per slide id. See docs/store.md for the layout.

    Modes: "r" reads; "r+" also updates an existing store (failures, diagnoses); "a" creates
    the store if absent and is what a scan uses. A run identity given with any mode must match
    the store's; "a" requires one, and planning or finalizing a slide needs one.
    """

    @classmethod
    def open(
        cls,
        uri: str,
        run: RunIdentity | None = None,
        *,
        mode: OpenMode = "r",
        storage_options: Mapping[str, object] | None = None,
        isolation: ReadIsolation | None = None,
    ) -> HeatmapStore:
        """The store at `uri`; with `isolation` (mode "r", a local store) every file read runs
        through it by slide (pcam_scan.store.guarded_store.IsolatedLocalStore: the viewer's)."""
        location = StoreLocation(uri, storage_options or {}, isolation)
        if mode not in ("r", "r+", "a"):
            raise ValueError(f"mode must be 'r', 'r+' or 'a', not {mode!r}")
        if mode == "a" and run is None:
            raise ValueError("opening a store to scan into (mode 'a') needs the run identity")
        root = _open_root(location, run if mode == "a" else None)
        check_root_attrs(uri, root.attrs.asdict(), run)
        return cls(location, run, writable=mode != "r")

    # -- planning and writing --------------------------------------------------------------

    def plan_slide(
        self,
        slide_id: str,
        record: SlideRecord,
        grid: CellGrid,
        tissue: npt.ArrayLike,
        block_cells: int,
        qc_settings: Mapping[str, float] | None = None,
    ) -> SlideStatus:
        """Create the slide's arrays, or keep them for a resume when they match this plan.

        With `qc_settings` (and a store of the current format version) the slide also gets its QC
        arrays, `qc_flags` and `focus`, chunked like `prob`; a slide resumed keeps what it was
        planned with.

        Returns the slide's status after planning: `planned`, or `complete` for a slide that is
        already done (nothing is touched then). A slide planned before with another file, grid,
        block size or tissue mask is refused: results are never mixed.
        """
        run = self._run_for_writing()
        validate_slide_id(slide_id)
        tissue_mask = np.asarray(tissue)
        if tissue_mask.dtype != np.bool_ or tissue_mask.shape != grid.shape:
            raise ValueError(
                f"tissue must be a bool grid of shape {grid.shape}, got {tissue_mask.dtype} {tissue_mask.shape}"
            )
        n_brows, n_bcols = block_grid_shape(grid, block_cells)
        existing = self._existing_attrs(slide_id)
        if existing is not None and existing.planned:
            self._check_resumable(slide_id, existing, record, grid, tissue_mask, block_cells)
            status = existing.status()
            if status is not None and status.state is SlideState.COMPLETE:
                return status
            self._update_slide_attrs(slide_id, replanned_attrs(record))
            return SlideStatus(SlideState.PLANNED)

        slide = self.location.group(slide_id, mode="w")
        prob = slide.create_group(PROB)
        _float_grid_array(prob, "0", grid.shape, (block_cells, block_cells))
        tissue_array = slide.create_array(
            TISSUE,
            shape=grid.shape,
            chunks=(block_cells, block_cells),
            dtype="bool",
            fill_value=False,
            dimension_names=AXES,
        )
        tissue_array[:] = tissue_mask
        slide.create_array(
            BLOCKS_DONE,
            shape=(n_brows, n_bcols),
            chunks=(1, 1),
            dtype="uint8",
            fill_value=0,
            compressors=None,
            dimension_names=("block_row", "block_col"),
        )
        write_attr(prob, P_OME.key, multiscales_attrs(slide_id, 1, grid.cell_um, "max"))
        with_qc = qc_settings is not None and self._root_format_version() >= 2
        if with_qc:
            _create_qc_arrays(slide, slide_id, grid, block_cells)
        n_blocks = len(plan_blocks(grid, tissue_mask, block_cells))
        attrs = planned_attrs(record, run, grid, block_cells, (n_brows, n_bcols), n_blocks)
        if with_qc and qc_settings is not None:
            attrs.update(qc_planned_attrs(qc_settings))
        self._update_slide_attrs(slide_id, attrs)
        return SlideStatus(SlideState.PLANNED)

    def chunk_writer(self, slide_id: str) -> ProbChunkWriter:
        """A picklable writer for the slide's blocks, to be shipped to Ray workers."""
        self._run_for_writing()
        self._planned_attrs(slide_id)
        return ProbChunkWriter(self.location, slide_id)

    def write_block(self, slide_id: str, block: Block, probs: npt.ArrayLike) -> None:
        self.chunk_writer(slide_id).write(block, probs)

    def finalize_slide(
        self,
        slide_id: str,
        seconds: Mapping[str, SupportsFloat],
        counts: Mapping[str, SupportsFloat] | None = None,
        *,
        pooling: Pooling = "max",
        top_cells: int = DEFAULT_TOP_CELLS,
    ) -> StoredSlide:
        """Build the pyramid and mark the slide complete (last). Refused while blocks are missing.

        `seconds` are per-stage timings (e.g. read, predict, write); `counts` are extra counts
        (e.g. patches predicted, with TTA); tissue_cells, predicted_cells and tissue_mm2 are
        computed here from the stored arrays.
        """
        self._run_for_writing()
        attrs = self._planned_attrs(slide_id)
        status = attrs.status()
        if status is not None and status.state is SlideState.COMPLETE:
            return self.stored_slide(slide_id)
        stage_seconds = finite_numbers(seconds, "seconds")
        extra_counts = finite_numbers(counts or {}, "counts")
        if pooling not in POOLINGS or top_cells < 1:
            raise ValueError(f"pooling must be one of {POOLINGS} and top_cells >= 1")
        pending = self.pending_blocks(slide_id)
        if pending:
            raise StoreError(
                f"slide {slide_id!r}: {len(pending)} of {attrs.planned_block_count()} blocks are not "
                "written yet; it cannot be finalized"
            )
        grid = attrs.grid()
        slide = self._slide_group(slide_id)
        prob = child_group(slide, PROB)
        level0 = np.asarray(child_array(prob, "0")[:], dtype=np.float32)
        tissue = np.asarray(child_array(slide, TISSUE)[:], dtype=bool)
        tissue_cells = int(np.count_nonzero(tissue))
        computed = computed_counts(
            tissue_cells, int(np.count_nonzero(~np.isnan(level0))), tissue_cells * grid.cell_area_mm2
        )
        if clash := sorted(computed.keys() & extra_counts.keys()):
            raise ValueError(f"counts {clash} are computed by the store; do not pass them")
        levels = build_pyramid(level0, pooling, top_cells)
        _write_levels(prob, levels)
        write_attr(prob, P_OME.key, multiscales_attrs(slide_id, len(levels), grid.cell_um, pooling))
        pyramid = PyramidRecord(len(levels), pooling, top_cells)
        updates = completed_attrs({**computed, **extra_counts}, stage_seconds, pyramid)
        qc_settings = attrs.qc_settings()
        if qc_settings is not None:
            updates = {**finalize_qc(slide, slide_id, grid.cell_um, qc_settings, top_cells, tissue), **updates}
        self._update_slide_attrs(slide_id, updates)
        return self.stored_slide(slide_id)

    def mark_failed(self, slide_id: str, message: str, record: SlideRecord | None = None) -> None:
        """Record that a slide failed, with a one-line message; its written blocks are kept.
        `record` is stored only for a slide never planned: a planned slide keeps the fingerprint
        its blocks were read from, so a file truncated mid-scan and then restored resumes (the
        failure used to record the truncated file's fingerprint, and the resume said "its file
        changed")."""
        self._require_writable()
        validate_slide_id(slide_id)
        one_line = " ".join(str(message).split()) or "failed without a message"
        existing = self._existing_attrs(slide_id)
        if existing is None:
            self.location.group(slide_id, mode="a")
        planned = existing is not None and existing.planned
        self._update_slide_attrs(
            slide_id, failed_attrs(one_line, None if planned else record, self.run if existing is None else None)
        )

    def set_diagnosis(self, slide_id: str, diagnosis: Mapping[str, object]) -> None:
        """Attach (or replace) the slide-level diagnosis of a complete slide."""
        self._require_writable()
        status = self.slide_status(slide_id)
        if status is None or status.state is not SlideState.COMPLETE:
            raise StoreError(f"slide {slide_id!r} is not complete; its diagnosis cannot be stored")
        self._update_slide_attrs(slide_id, diagnosis_attrs(json_copy(dict(diagnosis))))

    # -- helpers ---------------------------------------------------------------------------

    def _root_format_version(self) -> int:
        return root_format_version(self.location.group(mode="r").attrs.asdict())

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"the store {self.uri} was opened read-only")

    def _run_for_writing(self) -> RunIdentity:
        self._require_writable()
        if self.run is None:
            raise StoreError(f"the store {self.uri} was opened without a run identity; cannot scan into it")
        return self.run

    def _existing_attrs(self, slide_id: str) -> SlideAttrs | None:
        """The slide's attributes, or None when the store has no group for it yet."""
        if validate_slide_id(slide_id) not in self.list_slides():
            return None
        return self._slide_attrs(slide_id)

    def _update_slide_attrs(self, slide_id: str, updates: Mapping[str, object]) -> None:
        """Merge `updates` into the slide's attributes: one atomic write of its zarr.json."""
        current = {**self._slide_attrs(slide_id).raw, **updates}
        write_attr(self._slide_group(slide_id), ATTRS_KEY, current)

    def is_complete_for(self, slide_id: str, fingerprint: str) -> bool:
        """Whether the slide is complete in this store for this run and this very file: then a
        scan has nothing to do for it (its grid and tissue follow from the file and the run's
        settings, which the store's settings hash pins), and needs no planning, model or Ray."""
        existing = self._existing_attrs(slide_id)
        if existing is None or not existing.planned:
            return False
        run = self._run_for_writing()
        status = existing.status()
        return (
            status is not None
            and status.state is SlideState.COMPLETE
            and existing.run_ids() == (run.model_id, run.settings_hash)
            and existing.record().fingerprint == fingerprint
        )

    def _check_resumable(
        self,
        slide_id: str,
        existing: SlideAttrs,
        record: SlideRecord,
        grid: CellGrid,
        tissue: npt.NDArray[np.bool_],
        block_cells: int,
    ) -> None:
        run = self._run_for_writing()
        stored_record = existing.record()
        problems = []
        if existing.run_ids() != (run.model_id, run.settings_hash):
            problems.append("it was scanned with another model or settings")
        if stored_record.fingerprint != record.fingerprint:
            problems.append(
                f"its file changed (fingerprint {stored_record.fingerprint} in the store, {record.fingerprint} now)"
            )
        elif existing.grid() != grid:
            problems.append("its cell grid differs (other MPP, size or patch geometry)")
        elif existing.block_cells() != block_cells:
            problems.append(f"it was planned in blocks of {existing.block_cells()} cells, not {block_cells}")
        elif not np.array_equal(self.read_tissue(slide_id), tissue):
            problems.append("its tissue mask differs")
        if problems:
            raise StoreError(
                f"slide {slide_id!r} in {self.uri} cannot be resumed: {'; '.join(problems)}; "
                "use a new store or remove the slide's group"
            )


def _open_root(location: StoreLocation, create_for: RunIdentity | None) -> zarr.Group:
    """Open the store's root group; with `create_for`, create it (identity in the same write)."""
    try:
        if create_for is None:
            return location.group(mode="r")
        try:
            return location.group(mode="r+")
        except NodeNotFoundError:
            return location.group(mode="w-", attributes=root_attrs(create_for))
    except (FileExistsError, ContainsArrayError, ContainsArrayAndGroupError) as err:
        raise StoreError(f"{location.uri} exists and is not a pcam-scan heatmap store") from err
    except FileNotFoundError as err:
        if create_for is not None:  # e.g. an object-store bucket that does not exist
            raise StoreError(f"cannot create a heatmap store at {location.uri}: {err}") from err
        raise StoreError(f"no heatmap store at {location.uri}") from err
    except OSError as err:
        raise StoreError(f"cannot open the store {location.uri}: {err}") from err
    except NodeNotFoundError as err:
        raise StoreError(f"no heatmap store at {location.uri}") from err
    except (ValueError, TypeError, RecursionError) as err:  # a damaged root zarr.json
        raise StoreError(
            f"the store {location.uri} is damaged: its root metadata cannot be read ({type(err).__name__})"
        ) from None
    except Exception as err:  # object-store clients raise their own types (botocore, gcsfs...)
        if type(err).__module__.split(".")[0] in {"botocore", "aiobotocore", "s3fs", "gcsfs", "adlfs", "fsspec"}:
            raise StoreError(f"cannot open the store {location.uri}: {' '.join(str(err).split())}") from err
        raise


def _float_grid_array(group: zarr.Group, name: str, shape: tuple[int, int], chunks: tuple[int, int]) -> zarr.Array[Any]:
    return _grid_array(group, name, shape, chunks, "float32")


def _grid_array(
    group: zarr.Group, name: str, shape: tuple[int, int], chunks: tuple[int, int], dtype: str
) -> zarr.Array[Any]:
    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=float("nan") if dtype == "float32" else 0,
        dimension_names=AXES,
        overwrite=True,
    )


def _write_levels(group: zarr.Group, levels: Sequence[npt.NDArray[Any]]) -> None:
    """Write pyramid levels 1.. (level 0 holds the blocks); drop levels left by an older build."""
    for level, data in enumerate(levels[1:], start=1):
        rows, cols = data.shape
        chunks = (min(rows, PYRAMID_CHUNK_CELLS), min(cols, PYRAMID_CHUNK_CELLS))
        dtype = "uint8" if data.dtype == np.uint8 else "float32"
        _grid_array(group, str(level), (rows, cols), chunks, dtype)[:] = data
    for name in list(group.array_keys()):
        if name.isdigit() and int(name) >= len(levels):
            del group[name]


def _create_qc_arrays(slide: zarr.Group, slide_id: str, grid: CellGrid, block_cells: int) -> None:
    """Level 0 of `qc_flags` (uint8, 0) and `focus` (float32, NaN), chunked like `prob/0`, each
    in its group with its multiscales attribute: the four nodes written at once (Zarr's
    `create_hierarchy`), half the CPU of creating them one by one (QC's cost per slide). The
    arrays' metadata is made by creating them in memory."""
    nodes: dict[str, Any] = {}
    for name, dtype, pooling in ((QC_FLAGS, "uint8", "or"), (FOCUS, "float32", "mean")):
        ome = cast(dict[str, Any], json_copy({P_OME.key: multiscales_attrs(slide_id, 1, grid.cell_um, pooling)}))
        nodes[name] = GroupMetadata(attributes=ome)
        nodes[f"{name}/0"] = _grid_array(zarr.group(MemoryStore()), "0", grid.shape, (block_cells,) * 2, dtype).metadata
    for _ in slide.create_hierarchy(nodes):
        pass


def finalize_qc(
    slide: zarr.Group,
    slide_id: str,
    cell_um: float,
    settings: Mapping[str, object],
    top_cells: int,
    tissue: npt.NDArray[np.bool_],
) -> dict[str, object]:
    """The slide-level QC pass at finalize: the slide-wide flags (`pcam_scan.qc.flags.slide_flags`:
    ink reach, blur against the slide's own focus reference), the verdict, and the `qc_flags` /
    `focus` pyramids. Returns the `quality_control` record ({} for a slide without QC arrays).
    Writes only what changed: level 0 of `qc_flags` when a flag moved, the levels and their
    attribute when the pyramid has more than level 0 or had."""
    qc = QcSettings.from_dict(dict(settings))
    try:
        flags_group, focus_group = child_group(slide, QC_FLAGS), child_group(slide, FOCUS)
    except StoreError:
        return {}
    flags_array = child_array(flags_group, "0")
    stored_flags = np.asarray(flags_array[:], dtype=np.uint8)
    focus0 = np.asarray(child_array(focus_group, "0")[:], dtype=np.float32)
    flags0, reference = slide_flags(focus0, stored_flags, tissue, qc)
    if not np.array_equal(flags0, stored_flags):
        flags_array[:] = flags0
    verdict = slide_verdict(flags0, tissue, qc)
    for group, levels, pooling in (
        (flags_group, build_flag_pyramid(flags0, top_cells), "or"),
        (focus_group, build_pyramid(focus0, "mean", top_cells), "mean"),
    ):
        ome = json_copy(multiscales_attrs(slide_id, len(levels), cell_um, pooling))
        if len(levels) > 1 or group.attrs.get(P_OME.key) != ome:
            _write_levels(group, levels)
            write_attr(group, P_OME.key, ome)
    return qc_record(
        qc.to_dict(),
        verdict.verdict,
        verdict.reason,
        verdict.shares,
        verdict.excluded_share,
        reference if np.isfinite(reference) else None,
    )
