"""The Camelyon16 evaluation mask: lesions grown by 75 um, holes filled, ITC regions marked.

Follows the official `Evaluation_FROC.py` (computationalpathologygroup/Camelyon16) step by step,
at pyramid level 5 (downsample 32):
1. tumour pixels of the ground-truth mask at level 5;
2. Euclidean distance of every pixel to the nearest tumour pixel; pixels with distance strictly
   below 75 / (mpp * 2**level * 2) level-5 px are lesion: every lesion grows by 37.5 um on each
   side (75 um in total, "the size of 5 tumour cells"), so lesions closer than 75 um merge;
3. holes filled, then 8-connected labelling;
4. a region whose major axis is below 275 / (mpp * 2**level) px (200 um of ITC + the 75 um
   growth) is an isolated-tumour-cell region: detections there count neither way.

The major axis is scikit-image's `regionprops(...).major_axis_length`: 4 * sqrt of the largest
eigenvalue of the region's pixel-coordinate covariance (second central moments / area), i.e.
the major axis of the ellipse with the same second moments. It is computed here with numpy and
scipy because scikit-image is not a dependency.

Differences from the official script, on purpose:
- `mpp_um_px` is each slide's own level-0 MPP; the official script uses 0.243 for every slide
  (see docs/evaluation.md for what that changes on the 0.226 um/px scanner's slides);
- a mask pixel is tumour when > 0 (the official script needs exactly 255);
- a detection outside the mask array is outside every lesion (the official script would index
  out of range, or wrap around for negative coordinates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pcam_scan.annotations import SlideAnnotations, rasterize_annotations
from pcam_scan.evaluation.errors import EvaluationError

EVALUATION_LEVEL = 5
# Camelyon16's largest slide is about 220k x 110k px: 6900 x 3400 at level 5. Ten times that
# leaves room for any scanner; beyond it, the labels alone would take over a GiB.
MAX_MASK_PIXELS = 2**28
OFFICIAL_L0_MPP_UM_PX = 0.243
GROWTH_TOTAL_UM = 75.0
ITC_MAJOR_AXIS_UM = 275.0

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def growth_threshold_px(mpp_um_px: float, level: int = EVALUATION_LEVEL) -> float:
    """Distance (level px) below which a pixel joins a lesion: 75 / (mpp * 2**level * 2)."""
    return GROWTH_TOTAL_UM / (mpp_um_px * float(2**level) * 2)


def itc_threshold_px(mpp_um_px: float, level: int = EVALUATION_LEVEL) -> float:
    """Major axis (level px) below which a grown region is ITC: 275 / (mpp * 2**level)."""
    return ITC_MAJOR_AXIS_UM / (mpp_um_px * float(2**level))


def major_axis_length(rows: np.ndarray, cols: np.ndarray) -> float:
    """Major axis of one region's pixels, as scikit-image's regionprops computes it."""
    dr = rows - rows.mean()
    dc = cols - cols.mean()
    var_r = float(np.mean(dr * dr))
    var_c = float(np.mean(dc * dc))
    cov = float(np.mean(dr * dc))
    largest = (var_r + var_c) / 2 + math.sqrt(((var_r - var_c) / 2) ** 2 + cov**2)
    return 4.0 * math.sqrt(max(largest, 0.0))


def major_axis_lengths(labels: np.ndarray) -> dict[int, float]:
    """Major axis length of every labelled region (label -> length in pixels)."""
    out: dict[int, float] = {}
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows, cols = np.nonzero(labels[box] == label)
        out[label] = major_axis_length(rows.astype(np.float64), cols.astype(np.float64))
    return out


@dataclass(frozen=True)
class EvaluationMask:
    """Labelled lesions of one tumour slide at `level`, with the ITC labels marked."""

    labels: np.ndarray
    n_labels: int
    itc_labels: frozenset[int]
    mpp_um_px: float
    level: int = EVALUATION_LEVEL

    @property
    def downsample(self) -> int:
        return int(2**self.level)

    @property
    def n_lesions(self) -> int:
        """Lesions a detection should find: every region except the ITC ones."""
        return self.n_labels - len(self.itc_labels)

    def labels_at(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Region label under each level-0 point (integer division by 2**level); 0 outside."""
        col = np.floor_divide(np.asarray(l0_x, dtype=np.int64), self.downsample)
        row = np.floor_divide(np.asarray(l0_y, dtype=np.int64), self.downsample)
        height, width = self.labels.shape
        inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
        out = np.zeros(col.shape, dtype=np.int64)
        out[inside] = self.labels[row[inside], col[inside]]
        return out


def build_evaluation_mask(tumour: np.ndarray, mpp_um_px: float, level: int = EVALUATION_LEVEL) -> EvaluationMask:
    """The evaluation mask from a boolean tumour mask at `level` and the slide's level-0 MPP."""
    if not (math.isfinite(mpp_um_px) and mpp_um_px > 0):
        raise EvaluationError(f"slide MPP {mpp_um_px} um/px must be a positive number")
    tumour = np.asarray(tumour, dtype=bool)
    if tumour.ndim != 2:
        raise EvaluationError(f"a tumour mask must be 2-D, got shape {tumour.shape}")
    if not tumour.any():
        empty = np.zeros(tumour.shape, dtype=np.int32)
        return EvaluationMask(empty, 0, frozenset(), mpp_um_px, level)
    distance = ndimage.distance_transform_edt(~tumour)
    grown = distance < growth_threshold_px(mpp_um_px, level)
    filled = ndimage.binary_fill_holes(grown)
    labels, n_labels = ndimage.label(filled, structure=_EIGHT_CONNECTED)
    threshold = itc_threshold_px(mpp_um_px, level)
    itc = frozenset(label for label, axis in major_axis_lengths(labels).items() if axis < threshold)
    return EvaluationMask(labels.astype(np.int32), int(n_labels), itc, mpp_um_px, level)


def check_mask_size(shape: tuple[int, ...], what: str) -> None:
    """Refuse a mask bigger than any slide's level-5 mask (with labels, 5 bytes a pixel) before
    it is allocated: a 1e6 x 1e6 mask TIFF would ask for terabytes."""
    rows, cols = int(shape[0]), int(shape[1])
    if rows * cols > MAX_MASK_PIXELS:
        raise EvaluationError(
            f"{what}: a {cols} x {rows} px mask ({rows * cols * 5 / 2**30:.1f} GiB with its labels) "
            f"exceeds the limit of {MAX_MASK_PIXELS} px; no level-{EVALUATION_LEVEL} slide mask is that large"
        )


def mask_shape(l0_size_wh: tuple[int, int], level: int = EVALUATION_LEVEL) -> tuple[int, int]:
    """(height, width) of a level mask that holds every level-0 pixel: ceil(l0 / 2**level)."""
    d = 2**level
    return (math.ceil(l0_size_wh[1] / d), math.ceil(l0_size_wh[0] / d))


def annotation_extent_wh(annotations: SlideAnnotations) -> tuple[int, int]:
    """Level-0 (width, height) that holds every polygon, plus room for the 75 um growth."""
    points = np.concatenate([p.l0_xy for p in (*annotations.tumour, *annotations.exclusions)])
    margin = 2 ** (EVALUATION_LEVEL + 3)
    x_max, y_max = points.max(axis=0)
    return (math.ceil(x_max) + margin, math.ceil(y_max) + margin)


def tumour_mask_from_annotations(
    annotations: SlideAnnotations,
    l0_size_wh: tuple[int, int] | None = None,
    level: int = EVALUATION_LEVEL,
) -> np.ndarray:
    """Boolean tumour mask at `level` (tumour minus exclusions), slide-sized when the slide's
    level-0 size is known, else sized to the polygons (detections beyond it are outside)."""
    if annotations.is_empty:
        raise EvaluationError("the annotations hold no tumour polygon")
    size_wh = l0_size_wh if l0_size_wh is not None else annotation_extent_wh(annotations)
    shape = mask_shape(size_wh, level)
    check_mask_size(shape, "the annotations")
    return rasterize_annotations(annotations, float(2**level), shape)


def read_tumour_mask_tiff(path: str | Path, level: int = EVALUATION_LEVEL) -> np.ndarray:
    """Boolean tumour mask at `level` from a mask TIFF (pixel > 0 is tumour).

    A single-page TIFF is taken to be at `level` already (as `pcam-scan synth` writes them); in a
    multi-page pyramid (Camelyon16's `_Mask.tif`) the page whose size is level 0's / 2**level
    (within one pixel) is read. RGB(A) masks use their first channel, as the official script does.
    """
    import tifffile

    source = Path(path)
    d = 2**level
    try:
        with tifffile.TiffFile(source) as tif:
            pages = [p for p in tif.pages if hasattr(p, "shape")]
            if not pages:
                raise EvaluationError(f"{source}: the TIFF holds no image")
            chosen = pages[0]
            if len(pages) > 1:
                base_h, base_w = pages[0].shape[:2]
                matches = [p for p in pages if abs(p.shape[0] - base_h / d) <= 1 and abs(p.shape[1] - base_w / d) <= 1]
                if not matches:
                    raise EvaluationError(f"{source}: no page of the pyramid is at downsample {d} of {base_w}x{base_h}")
                chosen = matches[0]
            check_mask_size(chosen.shape, str(source))
            pixels = np.asarray(chosen.asarray())
    except FileNotFoundError:
        raise EvaluationError(f"{source}: no such mask file") from None
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise EvaluationError(f"{source}: cannot read the mask TIFF: {err}") from None
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise EvaluationError(f"{source}: mask has shape {pixels.shape}, expected a 2-D image")
    return pixels > 0
