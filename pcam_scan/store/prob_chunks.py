"""A slide's probability chunks in the store: the writer of a block's chunk, and which are done.

Which blocks a slide needs is `pcam_scan.geometry.plan_blocks` (every block with tissue), the
same function the scanner plans with.

A block of cells is exactly one chunk of `prob/0`, and `blocks_done` has one 1x1 chunk per block,
so every block is written by one worker into objects no other worker touches. The order makes
resume safe: the block's probability chunk (and its QC chunks, together) is written first, its
`blocks_done` chunk second, so a block reads as done only when its data was written whole.
Rewriting a block writes the same bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
from zarr.core.sync import sync
from zarr.errors import NodeNotFoundError

from pcam_scan.geometry import Block
from pcam_scan.qc.block import BlockQc
from pcam_scan.store.location import StoreLocation, child_array, child_group
from pcam_scan.store.schema import BLOCKS_DONE, FOCUS, PROB, QC_FLAGS


async def _write_chunks(chunks: list[tuple[Any, npt.NDArray[Any]]], cells: tuple[slice, slice]) -> None:
    """A block's chunks of several arrays (`prob` and, with QC, `qc_flags` and `focus`) written
    together: one hand-over to Zarr's event loop instead of one an array (a QC-on scan's block
    writes cost a third less CPU)."""
    await asyncio.gather(*(array.async_array.setitem(cells, values) for array, values in chunks))


def done_block_rcs(blocks_done: npt.NDArray[np.uint8]) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in np.argwhere(blocks_done == 1)}


class ProbChunkWriter:
    """Writes a slide's block probabilities, each as its one `prob/0` chunk plus its done mark.

    Picklable, for Ray workers: it travels as the store location and slide id, and opens the
    slide's arrays once in whatever process it runs in (not once per block). `probs` holds one
    value per cell of the block, float in [0, 1], NaN for cells that were not predicted. A slide
    planned with QC also gets the block's QC flags and focus scores, each its one chunk too,
    before the done mark (a slide planned without QC ignores them).
    """

    def __init__(self, location: StoreLocation, slide_id: str) -> None:
        self.location = location
        self.slide_id = slide_id
        self._arrays: tuple[Any, Any, tuple[Any, Any] | None] | None = None

    def __getstate__(self) -> dict[str, object]:
        return {"location": self.location, "slide_id": self.slide_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], state["slide_id"])  # type: ignore[misc]

    def write(self, block: Block, probs: npt.ArrayLike, qc: BlockQc | None = None) -> None:
        if self._arrays is None:
            slide = self.location.group(self.slide_id, mode="r+")
            self._arrays = (
                child_array(child_group(slide, PROB), "0"),
                child_array(slide, BLOCKS_DONE),
                self._qc_arrays(),
            )
        prob0, done, qc_arrays = self._arrays
        values = np.asarray(probs, dtype=np.float32)
        check_block_fits(block, values, prob0.shape, prob0.chunks)
        chunks: list[tuple[Any, npt.NDArray[Any]]] = [(prob0, values)]
        if qc is not None and qc_arrays is not None:
            if qc.flags.shape != values.shape or qc.focus.shape != values.shape:
                raise ValueError(f"block {block.block_rc} QC arrays do not match its {values.shape} cells")
            chunks += [(qc_arrays[0], qc.flags), (qc_arrays[1], qc.focus)]
        sync(_write_chunks(chunks, block.cell_slices()))
        done[block.block_row, block.block_col] = 1

    def _qc_arrays(self) -> tuple[Any, Any] | None:
        """Level 0 of `qc_flags` and `focus`, opened by path (two metadata reads: a writer opens
        them once a slide, in every process that writes its blocks); None for a slide planned
        without QC."""
        try:
            flags0 = self.location.array(f"{self.slide_id}/{QC_FLAGS}/0", mode="r+")
            focus0 = self.location.array(f"{self.slide_id}/{FOCUS}/0", mode="r+")
        except NodeNotFoundError:
            return None
        return flags0, focus0


def check_block_fits(
    block: Block, values: npt.NDArray[np.float32], shape: tuple[int, ...], chunks: tuple[int, ...]
) -> None:
    """Refuse (as a bug) a block that is not exactly one chunk, or values of wrong shape/range."""
    rows, cols = shape
    chunk_rows, chunk_cols = chunks
    expected = (
        block.block_row * chunk_rows,
        block.block_col * chunk_cols,
        min(chunk_rows, rows - block.block_row * chunk_rows),
        min(chunk_cols, cols - block.block_col * chunk_cols),
    )
    actual = (block.cell_row0, block.cell_col0, block.n_rows, block.n_cols)
    if expected != actual or min(expected[2:]) <= 0:
        raise ValueError(f"block {block} is not the chunk at {block.block_rc} of a {shape} grid in {chunks} chunks")
    if values.shape != (block.n_rows, block.n_cols):
        raise ValueError(f"block {block.block_rc} needs {(block.n_rows, block.n_cols)} values, got {values.shape}")
    finite = values[~np.isnan(values)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError(f"block {block.block_rc} values must be probabilities in [0, 1] or NaN")
