"""Reading a heatmap store: slides, their status, grids, tissue, probabilities and block progress.

The reader opens Zarr nodes afresh on every call (small JSON reads), so it always sees what other
processes (Ray workers, a diagnosis step) wrote, and it holds no open handles that could go stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.errors import NodeNotFoundError

from pcam_scan.errors import StoreError
from pcam_scan.geometry import Block, CellGrid
from pcam_scan.geometry import plan_blocks
from pcam_scan.store.prob_chunks import done_block_rcs
from pcam_scan.store.identity import RunIdentity
from pcam_scan.store.ids import validate_slide_id
from pcam_scan.store.location import StoreLocation, child_array, child_group
from pcam_scan.store.ngff import level_paths
from pcam_scan.store.schema import (
    ATTRS_KEY,
    BLOCKS_DONE,
    PROB,
    TISSUE,
    SlideRecord,
    SlideStatus,
    StoredSlide,
    grid_from_attrs,
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

    # -- slides ----------------------------------------------------------------------------

    def list_slides(self) -> list[str]:
        """Ids of every slide group in the store, sorted."""
        return sorted(self.location.group(mode="r").group_keys())

    def slide_status(self, slide_id: str) -> SlideStatus | None:
        """The slide's status; None when the store has no planned or failed slide by that id."""
        try:
            attrs = self._slide_attrs(slide_id)
        except StoreError:
            return None
        if "status" not in attrs:
            return None
        return SlideStatus.from_attrs(attrs["status"])

    def stored_slide(self, slide_id: str) -> StoredSlide:
        attrs = self._slide_attrs(slide_id)
        return StoredSlide(
            slide_id=slide_id,
            status=SlideStatus.from_attrs(attrs["status"]) if "status" in attrs else None,
            record=SlideRecord.from_attrs(attrs.get("slide", {})),
            model_id=attrs.get("model_id"),
            settings_hash=attrs.get("settings_hash"),
            counts=dict(attrs.get("counts", {})),
            seconds=dict(attrs.get("seconds", {})),
            diagnosis=attrs.get("diagnosis"),
        )

    def read_grid(self, slide_id: str) -> CellGrid:
        return grid_from_attrs(self._planned_attrs(slide_id)["grid"])

    # -- arrays ----------------------------------------------------------------------------

    def read_tissue(self, slide_id: str) -> npt.NDArray[np.bool_]:
        self._planned_attrs(slide_id)
        return np.asarray(child_array(self._slide_group(slide_id), TISSUE)[:], dtype=bool)

    def prob_level_shapes(self, slide_id: str) -> list[tuple[int, int]]:
        """Shapes of the `prob` pyramid levels, finest first (level 0 only until finalized)."""
        prob = self._prob_group(slide_id)
        return [_shape2(child_array(prob, path).shape) for path in _level_paths(prob)]

    def read_prob(self, slide_id: str, level: int = 0) -> npt.NDArray[np.float32]:
        """One pyramid level as float32; NaN where nothing was predicted (no tissue, or not yet)."""
        prob = self._prob_group(slide_id)
        paths = _level_paths(prob)
        if not 0 <= level < len(paths):
            raise StoreError(f"slide {slide_id!r} has prob levels 0-{len(paths) - 1}, not {level}")
        return np.asarray(child_array(prob, paths[level])[:], dtype=np.float32)

    # -- block bookkeeping -----------------------------------------------------------------

    def block_cells(self, slide_id: str) -> int:
        return int(self._planned_attrs(slide_id)["block_cells"])

    def planned_blocks(self, slide_id: str) -> list[Block]:
        """Every block with at least one tissue cell: the work a scan of this slide must do."""
        attrs = self._planned_attrs(slide_id)
        grid = grid_from_attrs(attrs["grid"])
        return plan_blocks(grid, self.read_tissue(slide_id), int(attrs["block_cells"]))

    def done_blocks(self, slide_id: str) -> set[tuple[int, int]]:
        """(block_row, block_col) of every block whose probabilities were written whole."""
        self._planned_attrs(slide_id)
        return done_block_rcs(np.asarray(child_array(self._slide_group(slide_id), BLOCKS_DONE)[:]))

    def pending_blocks(self, slide_id: str) -> list[Block]:
        """Planned blocks not written yet: what a resumed scan still has to do."""
        done = self.done_blocks(slide_id)
        return [block for block in self.planned_blocks(slide_id) if block.block_rc not in done]

    # -- helpers ---------------------------------------------------------------------------

    def _slide_group(self, slide_id: str) -> zarr.Group:
        validate_slide_id(slide_id)
        try:
            return self.location.group(slide_id, mode="r+" if self.writable else "r")
        except NodeNotFoundError as err:
            raise StoreError(f"slide {slide_id!r} is not in the store {self.uri}") from err

    def _prob_group(self, slide_id: str) -> zarr.Group:
        self._planned_attrs(slide_id)
        prob = child_group(self._slide_group(slide_id), PROB)
        if "ome" not in prob.attrs:
            raise StoreError(f"slide {slide_id!r}: prob is not an OME-NGFF multiscale group")
        return prob

    def _slide_attrs(self, slide_id: str) -> dict[str, Any]:
        raw = self._slide_group(slide_id).attrs.get(ATTRS_KEY, {})
        if not isinstance(raw, Mapping):
            raise StoreError(f"slide {slide_id!r} has malformed {ATTRS_KEY} attributes")
        return dict(raw)

    def _planned_attrs(self, slide_id: str) -> dict[str, Any]:
        """The slide's attributes, refusing a slide whose planning never finished."""
        attrs = self._slide_attrs(slide_id)
        if "grid" not in attrs:
            raise StoreError(f"slide {slide_id!r} was never planned in the store {self.uri}")
        return attrs


def _level_paths(prob: zarr.Group) -> list[str]:
    ome = prob.attrs["ome"]
    if not isinstance(ome, Mapping):
        raise StoreError("prob has a malformed 'ome' attribute")
    return level_paths(ome)


def _shape2(shape: tuple[int, ...]) -> tuple[int, int]:
    rows, cols = shape
    return (int(rows), int(cols))
