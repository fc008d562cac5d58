"""Reading a heatmap store: slides, their status, grids, tissue, probabilities and block progress.

The reader opens Zarr nodes afresh on every call (small JSON reads), so it always sees what other
processes (Ray workers, a diagnosis step) wrote, and it holds no open handles that could go stale.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.errors import NodeNotFoundError

from pcam_scan.errors import StoreError
from pcam_scan.geometry import Block, CellGrid, plan_blocks
from pcam_scan.store.identity import ModelCalibration, RunIdentity
from pcam_scan.store.ids import validate_slide_id
from pcam_scan.store.location import StoreLocation, child_array, child_group
from pcam_scan.store.ngff import level_paths
from pcam_scan.store.prob_chunks import done_block_rcs
from pcam_scan.store.schema import (
    ATTRS_KEY,
    BLOCKS_DONE,
    FOCUS,
    P_OME,
    PROB,
    QC_FLAGS,
    TISSUE,
    RootAttrs,
    SlideAttrs,
    SlideState,
    SlideStatus,
    StoredSlide,
)
from pcam_scan.store.validation import (
    DamagedSlideError,
    check_grid,
    check_metadata_size,
    check_prob,
    check_shape_before_reading,
    check_tissue,
    reading_slide,
)


class HeatmapReader:
    """Read access to a validated store; `HeatmapStore.open(uri)` builds one."""

    def __init__(self, location: StoreLocation, run: RunIdentity | None, writable: bool) -> None:
        self.location = location
        self.run = run
        self.writable = writable

    @property
    def uri(self) -> str:
        return self.location.uri

    def run_settings(self) -> Mapping[str, object]:
        """The resolved settings the store was created with (its root record), as stored."""
        record = self._root_record()
        return {} if record is None else record.settings

    def recorded_calibration(self) -> ModelCalibration | None:
        """The model's calibration the store recorded when it was created; None: not recorded
        (a store before format version 3)."""
        record = self._root_record()
        return None if record is None else record.calibration

    def _root_record(self) -> RootAttrs | None:
        return RootAttrs.from_attrs(self.location.group(mode="r").attrs.asdict())

    # -- slides ----------------------------------------------------------------------------

    def list_slides(self) -> list[str]:
        """Ids of every slide group in the store, sorted."""
        return self.location.child_node_names()

    def slide_status(self, slide_id: str) -> SlideStatus | None:
        """The slide's status; None when the store has no planned or failed slide by that id;
        status `damaged` (with the reason) when its metadata cannot be believed."""
        try:
            attrs = self._slide_attrs(slide_id)
        except DamagedSlideError as err:
            return SlideStatus(SlideState.DAMAGED, err.problem)
        except StoreError:
            return None
        if not attrs.has_status:
            return None
        try:
            status = self.stored_slide(slide_id).status
            if attrs.planned:
                self.read_grid(slide_id)
                self.block_cells(slide_id)
        except DamagedSlideError as err:
            return SlideStatus(SlideState.DAMAGED, err.problem)
        return status

    def stored_slide(self, slide_id: str) -> StoredSlide:
        attrs = self._slide_attrs(slide_id)
        with reading_slide(slide_id, "attributes"), _damaged_if_malformed(slide_id):
            return attrs.stored_slide(slide_id)

    def read_grid(self, slide_id: str) -> CellGrid:
        return _grid_of(slide_id, self._planned_attrs(slide_id))

    # -- arrays ----------------------------------------------------------------------------

    def read_tissue(self, slide_id: str) -> npt.NDArray[np.bool_]:
        """The cell-grid tissue mask, checked against the grid (bool, same shape)."""
        shape = self.read_grid(slide_id).shape
        with reading_slide(slide_id, "tissue mask"):
            array = child_array(self._slide_group(slide_id), TISSUE)
            check_shape_before_reading(slide_id, "tissue", array.shape, shape)
            tissue = np.asarray(array[:])
        check_tissue(slide_id, tissue, shape)
        return tissue

    def prob_level_shapes(self, slide_id: str) -> list[tuple[int, int]]:
        """Shapes of the `prob` pyramid levels, finest first (level 0 only until finalized)."""
        prob = self._prob_group(slide_id)
        with reading_slide(slide_id, "prob levels"):
            return [_shape2(child_array(prob, path).shape) for path in _level_paths(prob)]

    def read_prob(self, slide_id: str, level: int = 0) -> npt.NDArray[np.float32]:
        """One pyramid level as float32; NaN where nothing was predicted (no tissue, or not yet).
        Checked: float, level 0 of the grid's shape, values in [0, 1] or NaN."""
        shape = self.read_grid(slide_id).shape if level == 0 else None
        prob = self._prob_group(slide_id)
        with reading_slide(slide_id, f"prob level {level}"):
            paths = _level_paths(prob)
            if not 0 <= level < len(paths):
                raise StoreError(f"slide {slide_id!r} has prob levels 0-{len(paths) - 1}, not {level}")
            array = child_array(prob, paths[level])
            check_shape_before_reading(slide_id, f"prob level {level}", array.shape, shape)
            values = np.asarray(array[:])
        check_prob(slide_id, level, values, shape)
        return values.astype(np.float32, copy=False)

    def read_qc(self, slide_id: str, level: int = 0) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]] | None:
        """One level of the QC flags (uint8) and focus scores (float32, NaN off tissue); None when
        the slide has no QC (a store written before QC, or a scan with `--no-qc`)."""
        arrays = self._read_qc_arrays(slide_id, level, (QC_FLAGS, FOCUS))
        if arrays is None:
            return None
        flags, focus = arrays
        return flags, focus.astype(np.float32, copy=False)

    def read_qc_flags(self, slide_id: str, level: int = 0) -> npt.NDArray[np.uint8] | None:
        """One level of the QC flags alone (what the exclusion needs); None without QC."""
        arrays = self._read_qc_arrays(slide_id, level, (QC_FLAGS,))
        return None if arrays is None else arrays[0]

    def _read_qc_arrays(self, slide_id: str, level: int, names: tuple[str, ...]) -> list[npt.NDArray[Any]] | None:
        """The named QC arrays at `level`, checked against the grid; None when the slide lacks
        one. The slide's group is opened once (the scan's diagnosis pays for every opening)."""
        slide = self._slide_group(slide_id)
        shape = _grid_of(slide_id, self._planned_attrs(slide_id, slide)).shape if level == 0 else None
        arrays = []
        with reading_slide(slide_id, f"qc level {level}"):
            for name in names:
                group = slide.get(name)
                if not isinstance(group, zarr.Group):
                    return None
                paths = _level_paths(group)
                if not 0 <= level < len(paths):
                    raise StoreError(f"slide {slide_id!r} has {name} levels 0-{len(paths) - 1}, not {level}")
                arrays.append(np.asarray(child_array(group, paths[level])[:]))
        if arrays[0].dtype != np.uint8 or (shape is not None and any(array.shape != shape for array in arrays)):
            raise DamagedSlideError(slide_id, f"its QC arrays do not match its grid {shape}")
        return arrays

    # -- block bookkeeping -----------------------------------------------------------------

    def block_cells(self, slide_id: str) -> int:
        attrs = self._planned_attrs(slide_id)
        with _damaged_if_malformed(slide_id):
            return attrs.block_cells()

    def planned_blocks(self, slide_id: str) -> list[Block]:
        """Every block with at least one tissue cell: the work a scan of this slide must do."""
        return plan_blocks(self.read_grid(slide_id), self.read_tissue(slide_id), self.block_cells(slide_id))

    def done_blocks(self, slide_id: str) -> set[tuple[int, int]]:
        """(block_row, block_col) of every block whose probabilities were written whole."""
        self._planned_attrs(slide_id)
        with reading_slide(slide_id, "done marks"):
            return done_block_rcs(np.asarray(child_array(self._slide_group(slide_id), BLOCKS_DONE)[:]))

    def pending_blocks(self, slide_id: str) -> list[Block]:
        """Planned blocks not written yet: what a resumed scan still has to do."""
        done = self.done_blocks(slide_id)
        return [block for block in self.planned_blocks(slide_id) if block.block_rc not in done]

    # -- helpers ---------------------------------------------------------------------------

    def _slide_group(self, slide_id: str) -> zarr.Group:
        validate_slide_id(slide_id)
        local = self.location.local_path
        check_metadata_size(slide_id, None if local is None else local / slide_id / "zarr.json")
        with reading_slide(slide_id, "zarr.json"):
            try:
                return self.location.group(slide_id, mode="r+" if self.writable else "r")
            except NodeNotFoundError as err:
                raise StoreError(f"slide {slide_id!r} is not in the store {self.uri}") from err

    def _prob_group(self, slide_id: str) -> zarr.Group:
        self._planned_attrs(slide_id)
        with reading_slide(slide_id, "prob group"):
            prob = child_group(self._slide_group(slide_id), PROB)
            if P_OME.key not in prob.attrs:
                raise DamagedSlideError(slide_id, "prob is not an OME-NGFF multiscale group")
        return prob

    def _slide_attrs(self, slide_id: str, group: zarr.Group | None = None) -> SlideAttrs:
        """The slide's attributes (from its `group` when the caller has it open)."""
        group = self._slide_group(slide_id) if group is None else group
        with reading_slide(slide_id, "attributes"):
            raw = group.attrs.get(ATTRS_KEY, {})
        if not isinstance(raw, Mapping):
            raise DamagedSlideError(slide_id, f"its {ATTRS_KEY} attributes are not a mapping")
        return SlideAttrs(dict(raw))

    def _planned_attrs(self, slide_id: str, group: zarr.Group | None = None) -> SlideAttrs:
        """The slide's attributes, refusing a slide whose planning never finished."""
        attrs = self._slide_attrs(slide_id, group)
        if not attrs.planned:
            raise StoreError(f"slide {slide_id!r} was never planned in the store {self.uri}")
        return attrs


def _grid_of(slide_id: str, attrs: SlideAttrs) -> CellGrid:
    with reading_slide(slide_id, "grid"), _damaged_if_malformed(slide_id):
        grid = attrs.grid()
    return check_grid(slide_id, grid)


def _level_paths(prob: zarr.Group) -> list[str]:
    ome = prob.attrs[P_OME.key]
    if not isinstance(ome, Mapping):
        raise StoreError("prob has a malformed 'ome' attribute")
    return level_paths(ome)


def _shape2(shape: tuple[int, ...]) -> tuple[int, int]:
    rows, cols = shape
    return (int(rows), int(cols))


@contextmanager
def _damaged_if_malformed(slide_id: str) -> Iterator[None]:
    """A malformed attribute (a StoreError of the schema) makes the slide damaged."""
    try:
        yield
    except DamagedSlideError:
        raise
    except StoreError as err:
        raise DamagedSlideError(slide_id, str(err)) from None
