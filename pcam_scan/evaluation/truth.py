"""Ground truth per tumour slide: find its mask TIFF or annotation file, build the evaluation mask.

File names are matched case-insensitively on the slide name: a mask TIFF `<name>.tif`,
`<name>_Mask.tif` (Camelyon16) or `.tiff`; an annotation `<name>.xml` (ASAP), `.json` (NCRF)
or `.geojson` (QuPath). When both folders are given, a slide's mask TIFF wins over its
annotations (the organisers evaluated against the masks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcam_scan.annotations import read_annotations
from pcam_scan.annotations.cell_labels import tumour_cells_from_annotations, tumour_cells_from_mask
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.mask import (
    EVALUATION_LEVEL,
    EvaluationMask,
    build_evaluation_mask,
    read_tumour_mask_tiff,
    tumour_mask_from_annotations,
)
from pcam_scan.geometry import CellGrid

MASK_SUFFIXES = (".tif", ".tiff")
ANNOTATION_SUFFIXES = (".xml", ".json", ".geojson")


@dataclass(frozen=True)
class SlideScale:
    """A slide's level-0 MPP and, when known, its level-0 size (sizes the annotation mask)."""

    mpp_um_px: float
    l0_size_wh: tuple[int, int] | None = None

    @classmethod
    def of_grid(cls, grid: CellGrid) -> SlideScale:
        """The MPP and size a heatmap store recorded for a slide (its cell grid)."""
        return cls(grid.slide_mpp_um_px, (grid.l0_width, grid.l0_height))


@dataclass(frozen=True)
class TruthSources:
    """Folders of mask TIFFs and of annotation files; at least one is needed for tumour slides."""

    masks_dir: Path | None = None
    annotations_dir: Path | None = None

    def __post_init__(self) -> None:
        for folder in (self.masks_dir, self.annotations_dir):
            if folder is not None and not folder.is_dir():
                raise EvaluationError(f"{folder}: not a folder")


def find_slide_file(folder: Path, stems: Sequence[str], suffixes: Sequence[str]) -> Path | None:
    """The file in `folder` whose stem is one of `stems` and suffix one of `suffixes` (any case)."""
    wanted = {s.casefold() for s in stems}
    endings = {s.casefold() for s in suffixes}
    matches = sorted(p for p in folder.iterdir() if p.stem.casefold() in wanted and p.suffix.casefold() in endings)
    if len(matches) > 1:
        raise EvaluationError(
            f"{folder}: several ground-truth files for one slide: " + ", ".join(p.name for p in matches)
        )
    return matches[0] if matches else None


def truth_file(name: str, sources: TruthSources) -> tuple[bool, Path]:
    """The slide's ground-truth file: (True, its mask TIFF) or (False, its annotation file); a
    mask TIFF wins over annotations."""
    if sources.masks_dir is not None:
        path = find_slide_file(sources.masks_dir, (name, f"{name}_mask"), MASK_SUFFIXES)
        if path is not None:
            return True, path
    if sources.annotations_dir is not None:
        path = find_slide_file(sources.annotations_dir, (name,), ANNOTATION_SUFFIXES)
        if path is not None:
            return False, path
    raise EvaluationError(f"tumour slide {name}: no mask TIFF or annotation file found")


def load_evaluation_mask(
    name: str, sources: TruthSources, scale: SlideScale, level: int = EVALUATION_LEVEL
) -> tuple[EvaluationMask, Path]:
    """One tumour slide's evaluation mask and the file it came from."""
    is_mask, path = truth_file(name, sources)
    if is_mask:
        tumour = read_tumour_mask_tiff(path, level)
    else:
        tumour = tumour_mask_from_annotations(read_annotations(path), scale.l0_size_wh, level)
    return build_evaluation_mask(tumour, scale.mpp_um_px, level), path


def load_tumour_cells(name: str, sources: TruthSources, grid: CellGrid) -> np.ndarray:
    """Boolean (rows, cols): the cells of `grid` whose patch is tumour by the ground truth (the
    grid's label rule for annotations, PCam's for a mask TIFF: `pcam_scan.annotations.cell_labels`)."""
    is_mask, path = truth_file(name, sources)
    if is_mask:
        mask = read_tumour_mask_tiff(path, EVALUATION_LEVEL)
        return tumour_cells_from_mask(mask, float(2**EVALUATION_LEVEL), grid)
    return tumour_cells_from_annotations(read_annotations(path), grid)


def load_evaluation_masks(
    names: Sequence[str], sources: TruthSources, scales: Mapping[str, SlideScale]
) -> dict[str, tuple[EvaluationMask, Path]]:
    """Evaluation masks of the given tumour slides."""
    if sources.masks_dir is None and sources.annotations_dir is None:
        raise EvaluationError("tumour slides need ground truth: give a masks or annotations folder")
    out: dict[str, tuple[EvaluationMask, Path]] = {}
    for name in names:
        if name not in scales:
            raise EvaluationError(f"tumour slide {name}: its MPP is unknown")
        out[name] = load_evaluation_mask(name, sources, scales[name])
    return out
