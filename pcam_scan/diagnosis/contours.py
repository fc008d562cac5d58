"""Lesion outlines: each heatmap region's sub-cell shape traced as a polygon, in level-0 pixels.

A region (`pcam_scan.lesions.find_regions`) carries its sub-cell shape (`pcam_scan.lesion_geometry`:
the iso-contour of the interpolated probability field, corrected for the model's label rule). The
outline runs along the edges of the shape's sub-cells (1/8 cell), so rasterising the polygon at
that resolution gives back the shape, and the exported outline is exactly what was measured.
`trace_rings` and `outline_cells` work on any boolean raster (cells or sub-cells). Pure grid
maths, no I/O.

- One outer ring per region. Two cells of a region that meet only at a corner (8-connectivity)
  stay in one ring, which passes twice through that corner; ASAP and QuPath draw such a ring,
  although OGC validity checks (JTS `isValid`) flag the touching vertex.
- Holes (cells inside the region that are not part of it: below the threshold, or not predicted)
  become hole rings, later written as exclusion polygons (Camelyon16's `_2`). A hole that holds
  another region is filled instead: an exclusion is cleared whole by readers, so it would erase
  the region inside it.
- Rings are stored open (no repeated first vertex) with collinear vertices removed. Outer rings
  and holes are both returned counter-clockwise in x, y numbers (positive shoelace area: the
  GeoJSON right-hand rule for exteriors), since holes are written as polygons of their own.
- Corners map to level 0 through `CellGrid.px_to_l0` and are clipped to the slide, since the
  last row and column of cells may reach past its edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from pcam_scan.annotations import Polygon, SlideAnnotations, contours_to_annotations
from pcam_scan.geometry import CellGrid
from pcam_scan.lesion_geometry import SubCellShape
from pcam_scan.lesions import (
    Detection,
    DetectionSettings,
    Region,
    RegionSettings,
    check_heatmap,
    detect_points,
    find_regions,
    label_regions,
)
from pcam_scan.store import HeatmapReader
from pcam_scan.store.queries import StoredHeatmap, read_heatmap
from pcam_scan.wording import count_noun

# (d_row, d_col) neighbour offsets and the edge each open side contributes, as (start corner
# offset (x, y), direction (dx, dy)): the cell lies on the right of its edges (y points down).
_SIDES = (
    ((-1, 0), (0, 0), (1, 0)),  # top: left to right
    ((0, 1), (1, 0), (0, 1)),  # right: downwards
    ((1, 0), (1, 1), (-1, 0)),  # bottom: right to left
    ((0, -1), (0, 1), (0, -1)),  # left: upwards
)


@dataclass(frozen=True)
class CellRings:
    """Outline of one connected set of cells in cell-corner coordinates (x = col, y = row)."""

    outer_xy: np.ndarray = field(repr=False)
    holes_xy: tuple[np.ndarray, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class LesionContour:
    """One heatmap region with its outline in level-0 pixels: an outer ring and its holes."""

    region: Region
    outer_l0_xy: np.ndarray = field(repr=False)
    holes_l0_xy: tuple[np.ndarray, ...] = field(default=(), repr=False)


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start corners (x, y) and unit directions (dx, dy) of every cell edge between the mask
    and its outside, oriented with the mask on the right."""
    padded = np.pad(mask, 1)
    rows, cols = mask.shape
    starts: list[np.ndarray] = []
    directions: list[np.ndarray] = []
    for (d_row, d_col), corner, direction in _SIDES:
        neighbour = padded[1 + d_row : 1 + d_row + rows, 1 + d_col : 1 + d_col + cols]
        r, c = np.nonzero(mask & ~neighbour)
        starts.append(np.stack([c + corner[0], r + corner[1]], axis=1))
        directions.append(np.tile(np.asarray(direction), (r.size, 1)))
    return np.concatenate(starts), np.concatenate(directions)


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def trace_rings(mask: np.ndarray) -> list[np.ndarray]:
    """Every closed boundary ring of a boolean cell mask, as (N, 2) corner x, y arrays.

    Outer boundaries have positive shoelace area, holes negative. At a corner shared only
    diagonally by two mask cells the ring turns towards the other cell, so diagonal neighbours
    share one ring (the mask's cells are 8-connected, its outside 4-connected).
    """
    cells = np.asarray(mask, dtype=bool)
    starts, directions = _boundary_edges(cells)
    outgoing: dict[tuple[int, int], list[int]] = {}
    for index, (x, y) in enumerate(starts.tolist()):
        outgoing.setdefault((x, y), []).append(index)
    ends = starts + directions
    used = np.zeros(len(starts), dtype=bool)
    rings: list[np.ndarray] = []
    for first in range(len(starts)):
        if used[first]:
            continue
        ring_edges: list[int] = []
        edge = first
        while not used[edge]:
            used[edge] = True
            ring_edges.append(edge)
            edge = _next_edge(outgoing[(int(ends[edge, 0]), int(ends[edge, 1]))], directions, edge)
        ring_directions = directions[ring_edges]
        turns = np.any(ring_directions != np.roll(ring_directions, 1, axis=0), axis=1)
        rings.append(starts[ring_edges][turns].astype(np.float64))
    return rings


def _next_edge(candidates: list[int], directions: np.ndarray, edge: int) -> int:
    """The edge that continues `edge`: the only one leaving its end corner, or at a corner
    shared diagonally, the left turn (z of the cross product -1 with y down), which keeps the
    two diagonal cells on one ring."""
    if len(candidates) == 1:
        return candidates[0]
    dx_in, dy_in = directions[edge]
    for candidate in candidates:
        dx_out, dy_out = directions[candidate]
        if dx_in * dy_out - dy_in * dx_out == -1:
            return candidate
    raise ValueError(f"no left turn among {count_noun(len(candidates), 'edge')} at a saddle corner")


def outline_cells(component: np.ndarray, keep_inside: np.ndarray | None = None) -> CellRings:
    """The outline of one 8-connected set of cells: its outer ring and its holes.

    A hole (4-connected outside cells enclosed by the component) that holds any `keep_inside`
    cell is filled rather than outlined, so what it encloses stays inside the outline.
    """
    cells = np.asarray(component, dtype=bool)
    holes, n_holes = ndimage.label(ndimage.binary_fill_holes(cells) & ~cells)
    if keep_inside is not None and n_holes:
        held = np.unique(holes[np.asarray(keep_inside, dtype=bool) & (holes > 0)])
        cells = cells | np.isin(holes, held[held > 0])
    rings = trace_rings(cells)
    outer = [ring for ring in rings if _signed_area(ring) > 0]
    if len(outer) != 1:
        raise ValueError(f"a connected component traced to {len(outer)} outer rings")
    inner = tuple(ring[::-1].copy() for ring in rings if _signed_area(ring) < 0)
    return CellRings(outer_xy=outer[0], holes_xy=inner)


def cell_corners_to_l0(corners_xy: np.ndarray, grid: CellGrid) -> np.ndarray:
    """(N, 2) cell-corner x, y (col, row; fractions allowed) to level-0 x, y, clipped to the
    slide's extent."""
    cell_px = grid.geometry.cell_px
    l0_xy = np.array(
        [grid.px_to_l0((x * cell_px, y * cell_px)) for x, y in corners_xy.tolist()],
        dtype=np.float64,
    ).reshape(-1, 2)
    np.clip(l0_xy[:, 0], 0.0, grid.l0_width, out=l0_xy[:, 0])
    np.clip(l0_xy[:, 1], 0.0, grid.l0_height, out=l0_xy[:, 1])
    return l0_xy


def lesion_contours(prob: np.ndarray, grid: CellGrid, settings: RegionSettings) -> list[LesionContour]:
    """Every region of the heatmap at the threshold with its level-0 outline, largest first."""
    values = check_heatmap(prob, grid)
    labels, _ = label_regions(values, settings.threshold)
    contours: list[LesionContour] = []
    for region in find_regions(values, grid, settings):
        shape = region.shape
        if shape is None:
            raise ValueError("find_regions returned a region without its shape")
        others = _sub_cells(labels, shape, _other_regions(region.label))
        rings = outline_cells(shape.mask, keep_inside=others)
        origin = np.array(shape.origin_cell_rc[::-1], dtype=np.float64)
        contours.append(
            LesionContour(
                region=region,
                outer_l0_xy=cell_corners_to_l0(rings.outer_xy / shape.subsamples + origin, grid),
                holes_l0_xy=tuple(cell_corners_to_l0(h / shape.subsamples + origin, grid) for h in rings.holes_xy),
            )
        )
    return contours


def _other_regions(own: int) -> Callable[[np.ndarray], np.ndarray]:
    """Selects the cells of every region but `own` from a label array (0 is no region)."""

    def select(cells: np.ndarray) -> np.ndarray:
        others: np.ndarray = (cells > 0) & (cells != own)
        return others

    return select


def _sub_cells(labels: np.ndarray, shape: SubCellShape, select: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`select(labels)` over the shape's cells, repeated onto its sub-cell raster (0 off-grid)."""
    s = shape.subsamples
    rows, cols = shape.mask.shape[0] // s, shape.mask.shape[1] // s
    row0, col0 = shape.origin_cell_rc
    window = np.zeros((rows, cols), dtype=labels.dtype)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + rows, labels.shape[0]), min(col0 + cols, labels.shape[1])
    window[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = labels[r0:r1, c0:c1]
    return np.repeat(np.repeat(select(window), s, axis=0), s, axis=1)


def contours_as_annotations(
    contours: Sequence[LesionContour], tumour_group: str, exclusion_group: str
) -> SlideAnnotations:
    """Outlines as annotation polygons, for the annotation writers: `Lesion i` per region (in
    the contours' order) and `Lesion i hole j` exclusions for its holes."""
    annotations = contours_to_annotations([c.outer_l0_xy for c in contours], group=tumour_group, name_prefix="Lesion")
    exclusions = tuple(
        Polygon(name=f"Lesion {i} hole {j}", group=exclusion_group, l0_xy=hole)
        for i, contour in enumerate(contours)
        for j, hole in enumerate(contour.holes_l0_xy)
    )
    return dataclasses.replace(annotations, exclusions=exclusions)


def contour_measurements(contours: Sequence[LesionContour]) -> list[dict[str, float]]:
    """Per outline, what QuPath shows as its measurements: area, longest diameter, probabilities."""
    return [
        {
            "area_mm2": c.region.area_mm2,
            "diameter_um": c.region.diameter_um,
            "max_prob": c.region.max_prob,
            "mean_prob": c.region.mean_prob,
        }
        for c in contours
    ]


@dataclass(frozen=True)
class SlideLesions:
    """A slide's lesion outlines (regions >= the region threshold) and its point detections."""

    slide_id: str
    contours: tuple[LesionContour, ...]
    detections: tuple[Detection, ...]


def heatmap_lesions(
    heatmap: StoredHeatmap,
    regions: RegionSettings = RegionSettings(),
    detection: DetectionSettings = DetectionSettings(),
) -> SlideLesions:
    """Lesion outlines (level-0 polygons) and point detections (level-0 X, Y) of a heatmap."""
    return SlideLesions(
        slide_id=heatmap.slide_id,
        contours=tuple(lesion_contours(heatmap.prob, heatmap.grid, regions)),
        detections=tuple(detect_points(heatmap.prob, heatmap.grid, detection)),
    )


def stored_slide_lesions(
    store: HeatmapReader,
    slide_id: str,
    regions: RegionSettings = RegionSettings(),
    detection: DetectionSettings = DetectionSettings(),
) -> SlideLesions:
    """`heatmap_lesions` of a complete slide of the store."""
    return heatmap_lesions(read_heatmap(store, slide_id), regions, detection)
