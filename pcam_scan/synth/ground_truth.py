"""Camelyon16-style ground truth of a synthetic tumour slide: the ASAP XML annotation and the
level-5 lesion mask (`<name>_Mask.tif`), both from the plan's polygons.

The mask is one tiled, deflate-compressed 8-bit page at downsample 32 (Camelyon16's evaluation
level 5): 255 = tumour, 0 = anything else, resolution tags = slide MPP x 32. It is rasterised with
`rasterize_annotations`, the same function and pixel-centre rule that drew the tumour texture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tifffile

from pcam_scan.annotations.asap import write_asap_xml
from pcam_scan.annotations.model import SlideAnnotations
from pcam_scan.annotations.rasterize import rasterize_annotations
from pcam_scan.geometry import PatchGeometry
from pcam_scan.slide import open_slide, plan_grid
from pcam_scan.synth.files import written_atomically
from pcam_scan.synth.slide_writer import SynthSlide
from pcam_scan.synth.spec import SlideSpec

MASK_LEVEL = 5
MASK_DOWNSAMPLE = 2**MASK_LEVEL
MASK_TILE_PX = 256
TUMOUR_VALUE = 255


def mask_shape_hw(spec: SlideSpec) -> tuple[int, int]:
    """Level-5 size with the pyramid's floor rule: the slide's own level 5, where it has one."""
    return spec.height_px // MASK_DOWNSAMPLE, spec.width_px // MASK_DOWNSAMPLE


def write_lesion_mask(path: Path, annotations: SlideAnnotations, spec: SlideSpec) -> None:
    """Write the level-5 mask of `annotations` (tumour minus exclusions) to `path`, atomically."""
    mask = rasterize_annotations(annotations, float(MASK_DOWNSAMPLE), mask_shape_hw(spec))
    px_per_cm = 10_000.0 / (spec.mpp_um_px * MASK_DOWNSAMPLE)
    with written_atomically(path) as partial:
        tifffile.imwrite(
            partial,
            np.where(mask, np.uint8(TUMOUR_VALUE), np.uint8(0)),
            tile=(MASK_TILE_PX, MASK_TILE_PX),
            photometric="minisblack",
            compression="zlib",
            resolution=(px_per_cm, px_per_cm),
            resolutionunit="CENTIMETER",
            software="pcam-scan",
            metadata=None,
        )


def write_ground_truth(slide: SynthSlide, xml_path: Path, mask_path: Path) -> SynthSlide:
    """Write the slide's XML and mask; returns the record with their paths filled in."""
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    annotations = slide.annotations
    write_asap_xml(annotations, xml_path)
    write_lesion_mask(mask_path, annotations, slide.plan.spec)
    return dataclasses.replace(slide, xml_path=xml_path, mask_path=mask_path)


def write_qc_truth(slide: SynthSlide, path: Path) -> SynthSlide:
    """Write the slide's true artefact masks on the cell grid a PCam scan of it uses (the grid is
    planned from the written file, as the scan plans it): `<kind>` bool arrays (ink, blur, fold,
    bubble) in one .npz, with `cell_um`."""
    with open_slide(slide.path) as opened:
        _, grid = plan_grid(opened.info, PatchGeometry())
    l0_per_cell = grid.l0_per_px * grid.geometry.cell_px
    masks = slide.artefacts.cell_masks(grid.rows, grid.cols, l0_per_cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(path) as partial, partial.open("wb") as handle:
        arrays: dict[str, object] = {"cell_um": np.float64(grid.cell_um), **masks}
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
    return dataclasses.replace(slide, qc_truth_path=path)
