"""One synthetic slide: plan it, render level 0 strip by strip, write the pyramid.

Rendering goes in blocks of `strip_rows` x `RENDER_BLOCK_PX`, so a slide of any size needs about
one strip of memory per pyramid level plus one block's working arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcam_scan.annotations.model import SlideAnnotations
from pcam_scan.synth.artefacts import ArtefactSpec, SlideArtefacts, place_artefacts
from pcam_scan.synth.layout import Lesion, SlidePlan, plan_slide
from pcam_scan.synth.pyramid import PyramidLayout, RowsCallback, write_pyramid_tiff
from pcam_scan.synth.spec import SlideSpec
from pcam_scan.synth.texture import GLASS, SlideTexture

RENDER_BLOCK_PX = 2048


@dataclass(frozen=True)
class SynthSlide:
    """What was written for one slide, and where its ground truth is (None for normal slides or
    before `ground_truth.write_ground_truth`)."""

    name: str
    path: Path
    plan: SlidePlan
    level_wh: tuple[tuple[int, int], ...]
    xml_path: Path | None = None
    mask_path: Path | None = None
    artefacts: SlideArtefacts = SlideArtefacts()
    qc_truth_path: Path | None = None

    @property
    def tumour(self) -> bool:
        return self.plan.is_tumour

    @property
    def lesions(self) -> tuple[Lesion, ...]:
        return self.plan.lesions

    @property
    def annotations(self) -> SlideAnnotations:
        return self.plan.annotations()


def write_synthetic_slide(
    path: str | Path, spec: SlideSpec, seed: int, tumour: bool, on_rows: RowsCallback | None = None
) -> SynthSlide:
    """Write one slide (pyramidal JPEG TIFF) to `path`; same (spec, seed, tumour), same bytes."""
    return write_planned_slide(path, plan_slide(spec, seed, tumour), on_rows)


def write_planned_slide(
    path: str | Path,
    plan: SlidePlan,
    on_rows: RowsCallback | None = None,
    artefacts: ArtefactSpec | None = None,
) -> SynthSlide:
    """Write a slide already planned (the data set plans every slide before writing any), with
    the artefacts of `artefacts` placed on its tissue (QC's ground truth, `synth.artefacts`)."""
    path = Path(path)
    spec = plan.spec
    layout = PyramidLayout.of(spec.width_px, spec.height_px, spec.tile_px)
    texture = SlideTexture(plan)
    placed = plan_artefacts(texture, artefacts) if artefacts is not None else SlideArtefacts()
    description = f"pcam-scan synthetic Camelyon16-like slide {path.stem}; seed {plan.seed}; {spec.mpp_um_px} um/px"
    strips = _level0_strips(texture, spec, layout.strip_rows, placed)
    write_pyramid_tiff(path, strips, layout, spec.mpp_um_px, spec.jpeg_quality, description, on_rows)
    return SynthSlide(name=path.stem, path=path, plan=plan, level_wh=layout.level_wh, artefacts=placed)


def plan_artefacts(texture: SlideTexture, spec: ArtefactSpec) -> SlideArtefacts:
    """The slide's artefacts, centred on its tissue (seeded by the slide's seed)."""
    plan = texture.plan
    corners = np.concatenate([polygon for polygon in plan.tissue])
    box = (*corners.min(axis=0), *corners.max(axis=0))

    def inside_tissue(l0_x: float, l0_y: float) -> bool:
        return bool(texture.labels(int(l0_x), int(l0_y), 1, 1)[0, 0] != GLASS)

    return place_artefacts(spec, plan.spec.mpp_um_px, inside_tissue, box, plan.seed)


def _level0_strips(
    texture: SlideTexture, spec: SlideSpec, strip_rows: int, artefacts: SlideArtefacts
) -> Iterator[np.ndarray]:
    for l0_y in range(0, spec.height_px, strip_rows):
        rows = min(strip_rows, spec.height_px - l0_y)
        strip = np.empty((rows, spec.width_px, 3), np.uint8)
        for l0_x in range(0, spec.width_px, RENDER_BLOCK_PX):
            cols = min(RENDER_BLOCK_PX, spec.width_px - l0_x)
            block = texture.render(l0_x, l0_y, cols, rows)
            if not artefacts.empty:
                block = artefacts.paint(block, l0_x, l0_y, texture.render)
            strip[:, l0_x : l0_x + cols] = block
        yield strip
