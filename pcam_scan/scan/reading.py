"""Read a block: ONE region read at the read plane (its cells plus a halo), never cut here.

The region is what travels to the model stage, which cuts the patches where it runs
(`pcam_scan.model.patch_cutting`); a block's probabilities come back and are scattered into
its cells.
"""

from __future__ import annotations

import numpy as np

from pcam_scan.geometry import Block, PatchGeometry
from pcam_scan.slide import ReadPlan, Slide


def read_block_region(slide: Slide, read_plan: ReadPlan, geometry: PatchGeometry, block: Block) -> np.ndarray:
    """uint8 (H, W, 3): the block's `region_px_box` at the read plane, white beyond the slide."""
    x0, y0, width, height = block.region_px_box(geometry)
    return slide.read_px_region(read_plan, (x0, y0), (width, height))


def scatter_block_probs(block: Block, block_tissue: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The block's (n_rows, n_cols) float32 heatmap: probs at tissue cells, NaN elsewhere."""
    out = np.full((block.n_rows, block.n_cols), np.nan, dtype=np.float32)
    out[np.asarray(block_tissue, dtype=bool)] = probs
    return out
