"""Cutting a block's region into its 96 px patches: the one place that does it.

A block is read as ONE region (its cells plus a halo) and travels as that region; the model
stage cuts the patches itself, as a strided view (no copy) followed by one gather of the tissue
cells' patches. On a GPU the gather runs on the device copy of the region, so no stage before
the model ever holds per-patch arrays (at stride 32 they are 9x the region's bytes). The CPU
model stage cuts the same way, with the same torch calls, so the patches are identical.

`cut_patches` is the numpy view for CPU code that wants every patch (training's patch mining,
the read benchmark).
"""

from __future__ import annotations

import numpy as np
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import Block, PatchGeometry


def check_region(region_shape: tuple[int, ...], block: Block, geometry: PatchGeometry) -> None:
    """Refuse a region that is not exactly the block's `region_px_box` in RGB."""
    _, _, width, height = block.region_px_box(geometry)
    if len(region_shape) != 3 or region_shape != (height, width, 3):
        raise ConfigError(f"region {region_shape} does not match block region {height}x{width}x3")


def cut_patches(region: np.ndarray, block: Block, geometry: PatchGeometry) -> np.ndarray:
    """All patches of a block as a read-only strided view, shape (n_rows, n_cols, P, P, 3).

    `region` is the block's region read at the read plane, exactly `block.region_px_box` in size.
    Patch (i, j) is centred on the block's cell (i, j).
    """
    check_region(region.shape, block, geometry)
    p, s = geometry.patch_px, geometry.stride_px
    windows = np.lib.stride_tricks.sliding_window_view(region, (p, p), axis=(0, 1))
    # windows: (H-p+1, W-p+1, 3, p, p) -> every stride-th window, channels last
    return windows[::s, ::s].transpose(0, 1, 3, 4, 2)


def tissue_cell_index(tissue_cells: np.ndarray) -> np.ndarray:
    """Flat row-major indices of the block's tissue cells: where each patch's P(tumour) goes."""
    return np.flatnonzero(np.asarray(tissue_cells, dtype=bool)).astype(np.int64)


def cut_tissue_patches(region: torch.Tensor, cell_index: torch.Tensor, patch_px: int, stride_px: int) -> torch.Tensor:
    """uint8 (N, P, P, 3) patches of the cells `cell_index` (flat, row-major over the block),
    cut from a block's contiguous (H, W, 3) region tensor on any device.

    An `as_strided` window view of the region, then one gather: the only copy is the patches of
    tissue cells, made where the region lies (on the GPU for a GPU model).
    """
    if region.dtype != torch.uint8 or region.ndim != 3 or not region.is_contiguous():
        raise ConfigError(
            f"region must be a contiguous uint8 (H, W, 3) tensor, got {region.dtype} {tuple(region.shape)}"
        )
    height, width, _ = region.shape
    n_rows = (height - patch_px) // stride_px + 1
    n_cols = (width - patch_px) // stride_px + 1
    row_stride, col_stride, channel_stride = region.stride()
    windows = region.as_strided(
        (n_rows, n_cols, patch_px, patch_px, 3),
        (stride_px * row_stride, stride_px * col_stride, row_stride, col_stride, channel_stride),
    )
    return windows[cell_index // n_cols, cell_index % n_cols]
