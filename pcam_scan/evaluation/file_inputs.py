"""The evaluation's inputs taken from prediction files in the challenge formats (any producer):
a CSV of slide probabilities, a folder of per-slide detection CSVs, and each slide's MPP (and
size) read from its file, or one fixed MPP for every slide (e.g. the official script's 0.243).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.artefacts import read_detection_folder, read_slide_probabilities
from pcam_scan.evaluation.reference import Reference
from pcam_scan.evaluation.store_inputs import Predictions, check_fixed_mpp, fixed_mpp_source
from pcam_scan.evaluation.truth import SlideScale, find_slide_file
from pcam_scan.slide import SLIDE_SUFFIXES, open_slide


def slide_scales(
    names: Sequence[str], slides_dir: Path | None, mpp_um_px: float | None
) -> tuple[dict[str, SlideScale], str]:
    """Each named slide's MPP (and size) from its file, and a word on where the MPP came from."""
    if slides_dir is None:
        if mpp_um_px is None:
            raise ConfigError(
                "the evaluation needs each slide's MPP: pass --slides DIR to read it from the "
                "slides, or --mpp 0.243 for the official script's fixed value"
            )
        check_fixed_mpp(mpp_um_px)
        return {n: SlideScale(mpp_um_px) for n in names}, fixed_mpp_source(mpp_um_px)
    if not slides_dir.is_dir():
        raise ConfigError(f"{slides_dir}: not a folder of slides")
    scales: dict[str, SlideScale] = {}
    for name in names:
        path = find_slide_file(slides_dir, (name,), tuple(sorted(SLIDE_SUFFIXES)))
        if path is None:
            raise ConfigError(f"{slides_dir}: no slide file for {name}")
        with open_slide(path, mpp_um_px) as slide:
            info = slide.info
        scales[name] = SlideScale(info.mpp_um_px, (info.l0_width, info.l0_height))
    source = "each slide's own" if mpp_um_px is None else fixed_mpp_source(mpp_um_px)
    return scales, source


def file_predictions(
    reference: Reference,
    probabilities: Path,
    detections: Path,
    slides_dir: Path | None,
    mpp_um_px: float | None,
) -> Predictions:
    """Challenge CSVs from any producer, and the tumour slides' MPP from their files under
    `slides_dir` or the fixed `mpp_um_px`."""
    tumour_names = [e.name for e in reference.entries if e.is_tumour]
    scales, mpp_source = slide_scales(tumour_names, slides_dir, mpp_um_px)
    return Predictions(
        probabilities=read_slide_probabilities(probabilities),
        detections=read_detection_folder(detections, reference.names),
        scales=scales,
        mpp_source=mpp_source,
        inputs={"source": "files", "probabilities": str(probabilities), "detections": str(detections)},
    )
