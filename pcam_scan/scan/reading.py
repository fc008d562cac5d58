"""Read a block: one region read at the read plane, cut into the patches of its tissue cells."""

from __future__ import annotations

import numpy as np

from pcam_scan.blocks import tissue_patches
from pcam_scan.geometry import Block, PatchGeometry
from pcam_scan.slide import ReadPlan, Slide


def read_block_patches(
    slide: Slide,
    read_plan: ReadPlan,
    geometry: PatchGeometry,
    block: Block,
    block_tissue: np.ndarray,
) -> np.ndarray:
    """uint8 (N, P, P, 3) patches of the block's tissue cells, in row-major cell order."""
    x0, y0, width, height = block.region_px_box(geometry)
    region = slide.read_px_region(read_plan, (x0, y0), (width, height))
    patches, _ = tissue_patches(region, block, geometry, block_tissue)
    return patches


def scatter_block_probs(block: Block, block_tissue: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The block's (n_rows, n_cols) float32 heatmap: probs at tissue cells, NaN elsewhere."""
    out = np.full((block.n_rows, block.n_cols), np.nan, dtype=np.float32)
    out[np.asarray(block_tissue, dtype=bool)] = probs
    return out
