"""PCam geometry as data: cells, patches and blocks, and their level-0 coordinates.

Pure arithmetic, no slide and no I/O, so every coordinate can be checked by hand.

Planes and their prefixes (most bugs in this field are a coordinate in the wrong plane):
- `l0_`   level-0 pixels of the slide (slide MPP, e.g. 0.243 or 0.226 um/px);
- `px_`   pixels of the read plane, the plane the model sees (model MPP, e.g. 0.972 um/px);
- `cell_` heatmap rows/cols; one cell = `stride_px` read-plane pixels (32 px = the PCam label);
- `block_` rows/cols of blocks of cells, the unit of work and of Zarr chunks.

The prediction for cell (row, col) comes from the `patch_px` patch centred on that cell, so with
the PCam defaults (96 px patch, 32 px label, stride 32) the label region of the patch is exactly
the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pcam_scan.errors import ConfigError
from pcam_scan.validation import check_mpp

if TYPE_CHECKING:  # pure arithmetic: parsers import this module, and they need no numpy
    import numpy as np

PCAM_PATCH_PX = 96
PCAM_LABEL_PX = 32
PCAM_MPP_UM_PX = 0.972
# Plausible bounds, checked before anything is allocated: a checkpoint declaring 1,000,000 px
# patches would otherwise make a scan allocate tens of GiB.
MAX_PATCH_PX = 1024

LabelRule = Literal["pcam-any", "centre-majority"]
LABEL_RULES: tuple[LabelRule, ...] = ("pcam-any", "centre-majority")
"""How a patch's label was defined from the tumour in its centre `label_px` square:
- "pcam-any": positive when any tumour pixel lies in it (PatchCamelyon's rule, the default);
- "centre-majority": positive when tumour covers more than half of it.
The rule moves where a model's output turns positive (under "pcam-any", up to half a label square
outside the lesion), so lesion geometry needs it to measure lesions without bias."""


def check_label_rule(value: object) -> LabelRule:
    """`value` as a label rule; anything else raises `ConfigError`."""
    if value not in LABEL_RULES:
        raise ConfigError(f"label rule {value!r} is not one of {', '.join(LABEL_RULES)}")
    return value


@dataclass(frozen=True)
class PatchGeometry:
    """What the model expects: patch and label size at its MPP, and the scan stride.

    These come from the checkpoint's metadata; the defaults are PatchCamelyon's.
    """

    patch_px: int = PCAM_PATCH_PX
    label_px: int = PCAM_LABEL_PX
    mpp_um_px: float = PCAM_MPP_UM_PX
    stride_px: int = PCAM_LABEL_PX
    label_rule: LabelRule = "pcam-any"

    def __post_init__(self) -> None:
        check_label_rule(self.label_rule)
        if self.patch_px <= 0 or self.label_px <= 0 or self.stride_px <= 0:
            raise ConfigError("patch, label and stride sizes must be positive")
        if self.patch_px > MAX_PATCH_PX:
            raise ConfigError(f"patch {self.patch_px} px exceeds the limit of {MAX_PATCH_PX} px")
        if self.label_px > self.patch_px:
            raise ConfigError(f"label {self.label_px} px is larger than patch {self.patch_px} px")
        if self.stride_px < self.label_px:
            raise ConfigError(
                f"stride {self.stride_px} px is below the label size {self.label_px} px: cells would overlap"
            )
        if self.stride_px > self.patch_px:
            raise ConfigError(f"stride {self.stride_px} px is larger than the patch {self.patch_px} px")
        if (self.patch_px - self.stride_px) % 2:
            raise ConfigError(
                f"patch {self.patch_px} px minus stride {self.stride_px} px must be even "
                "so that the patch is centred on its cell"
            )
        check_mpp("model MPP", self.mpp_um_px)

    @property
    def cell_px(self) -> int:
        """Side of one heatmap cell in read-plane pixels (= the stride)."""
        return self.stride_px

    @property
    def halo_px(self) -> int:
        """How far a cell's patch reaches beyond the cell on each side."""
        return (self.patch_px - self.stride_px) // 2


@dataclass(frozen=True)
class CellGrid:
    """The heatmap grid of one slide and its exact mapping to level-0 pixels.

    `px_mpp_um_px` is the pixel size of the read plane: the model MPP, or the MPP of a pyramid
    level used as is because it lies within 1% of the model MPP. Storing it keeps the cell to
    level-0 mapping exact in both cases.
    """

    l0_width: int
    l0_height: int
    slide_mpp_um_px: float
    px_mpp_um_px: float
    geometry: PatchGeometry

    def __post_init__(self) -> None:
        if self.l0_width <= 0 or self.l0_height <= 0:
            raise ConfigError("slide dimensions must be positive")
        if self.slide_mpp_um_px <= 0 or self.px_mpp_um_px <= 0:
            raise ConfigError("MPP must be positive")

    @property
    def l0_per_px(self) -> float:
        """Level-0 pixels per read-plane pixel."""
        return self.px_mpp_um_px / self.slide_mpp_um_px

    @property
    def px_width(self) -> float:
        return self.l0_width / self.l0_per_px

    @property
    def px_height(self) -> float:
        return self.l0_height / self.l0_per_px

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.px_height / self.geometry.cell_px - 1e-9))

    @property
    def cols(self) -> int:
        return max(1, math.ceil(self.px_width / self.geometry.cell_px - 1e-9))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def cell_um(self) -> float:
        """Side of one heatmap cell in micrometres: the stride in read-plane px at the plane's MPP
        (the one definition: lesion sizes, the store's NGFF scale, the viewer, tissue maps)."""
        return self.geometry.cell_px * self.px_mpp_um_px

    @property
    def cell_area_mm2(self) -> float:
        side_mm = self.cell_um / 1000.0
        return side_mm * side_mm

    def cell_px_xy(self, cell_rc: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner of a cell in read-plane pixels."""
        row, col = cell_rc
        return (col * self.geometry.cell_px, row * self.geometry.cell_px)

    def patch_px_box(self, cell_rc: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the patch centred on a cell, read-plane pixels (may be < 0)."""
        x, y = self.cell_px_xy(cell_rc)
        halo = self.geometry.halo_px
        size = self.geometry.patch_px
        return (x - halo, y - halo, x - halo + size, y - halo + size)

    def px_to_l0(self, px_xy: tuple[float, float]) -> tuple[float, float]:
        return (px_xy[0] * self.l0_per_px, px_xy[1] * self.l0_per_px)

    def l0_to_px(self, l0_xy: tuple[float, float]) -> tuple[float, float]:
        return (l0_xy[0] / self.l0_per_px, l0_xy[1] / self.l0_per_px)

    def patch_l0_box(self, cell_rc: tuple[int, int]) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the cell's patch in level-0 pixels."""
        x0, y0, x1, y1 = self.patch_px_box(cell_rc)
        a = self.px_to_l0((x0, y0))
        b = self.px_to_l0((x1, y1))
        return (a[0], a[1], b[0], b[1])

    def cell_l0_box(self, cell_rc: tuple[int, int]) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the cell (the label region at stride 32) in level-0 pixels."""
        x, y = self.cell_px_xy(cell_rc)
        c = self.geometry.cell_px
        a = self.px_to_l0((x, y))
        b = self.px_to_l0((x + c, y + c))
        return (a[0], a[1], b[0], b[1])

    def cell_center_l0(self, cell_rc: tuple[float, float]) -> tuple[float, float]:
        """Level-0 centre of a cell; fractional rows/cols are allowed (sub-cell peaks)."""
        row, col = cell_rc
        c = self.geometry.cell_px
        return self.px_to_l0(((col + 0.5) * c, (row + 0.5) * c))

    def l0_to_cell(self, l0_xy: tuple[float, float]) -> tuple[int, int]:
        """The cell that holds a level-0 point."""
        px_x, px_y = self.l0_to_px(l0_xy)
        c = self.geometry.cell_px
        return (math.floor(px_y / c), math.floor(px_x / c))


@dataclass(frozen=True)
class Block:
    """A rectangle of cells, read as one region, predicted together, written as one Zarr chunk."""

    block_row: int
    block_col: int
    cell_row0: int
    cell_col0: int
    n_rows: int
    n_cols: int

    @property
    def block_rc(self) -> tuple[int, int]:
        return (self.block_row, self.block_col)

    @property
    def n_cells(self) -> int:
        return self.n_rows * self.n_cols

    def region_px_box(self, geometry: PatchGeometry) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) of the one region that holds every patch of the block.

        The block's cells plus a halo of `halo_px` on each side, in read-plane pixels.
        """
        c = geometry.cell_px
        halo = geometry.halo_px
        return (
            self.cell_col0 * c - halo,
            self.cell_row0 * c - halo,
            self.n_cols * c + 2 * halo,
            self.n_rows * c + 2 * halo,
        )

    def cell_slices(self) -> tuple[slice, slice]:
        """The block's cells as slices into the slide's cell grid."""
        return (
            slice(self.cell_row0, self.cell_row0 + self.n_rows),
            slice(self.cell_col0, self.cell_col0 + self.n_cols),
        )


def block_grid_shape(grid: CellGrid, block_cells: int) -> tuple[int, int]:
    """Number of block rows and cols that cover the cell grid."""
    if block_cells <= 0:
        raise ConfigError("block size must be positive")
    return (math.ceil(grid.rows / block_cells), math.ceil(grid.cols / block_cells))


def block_at(grid: CellGrid, block_rc: tuple[int, int], block_cells: int) -> Block:
    """The block at (block_row, block_col), clipped at the grid's last row and column."""
    b_row, b_col = block_rc
    n_brows, n_bcols = block_grid_shape(grid, block_cells)
    if not (0 <= b_row < n_brows and 0 <= b_col < n_bcols):
        raise ConfigError(f"block {block_rc} is outside the {n_brows}x{n_bcols} block grid")
    row0 = b_row * block_cells
    col0 = b_col * block_cells
    return Block(
        block_row=b_row,
        block_col=b_col,
        cell_row0=row0,
        cell_col0=col0,
        n_rows=min(block_cells, grid.rows - row0),
        n_cols=min(block_cells, grid.cols - col0),
    )


def plan_blocks(grid: CellGrid, tissue_cells: np.ndarray, block_cells: int) -> list[Block]:
    """The blocks that hold at least one tissue cell, in row-major order."""
    if tissue_cells.shape != grid.shape:
        raise ConfigError(f"tissue grid {tissue_cells.shape} does not match cell grid {grid.shape}")
    n_brows, n_bcols = block_grid_shape(grid, block_cells)
    blocks = []
    for b_row in range(n_brows):
        for b_col in range(n_bcols):
            block = block_at(grid, (b_row, b_col), block_cells)
            if tissue_cells[block.cell_slices()].any():
                blocks.append(block)
    return blocks
