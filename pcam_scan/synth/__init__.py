"""Synthetic Camelyon16-like slides: H&E-like tissue with lesions of known size and place, as
pyramidal JPEG TIFFs OpenSlide reads, with ASAP XML, level-5 masks and a reference.csv.

Tests and benchmarks make their inputs with these; `pcam-scan synth` is the command line. Names
are loaded on first use, so importing `pcam_scan.synth.spec` (the CLI's parser) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcam_scan.synth.dataset import SynthProgress, write_synthetic_dataset
    from pcam_scan.synth.ground_truth import write_ground_truth, write_lesion_mask
    from pcam_scan.synth.layout import Lesion, SlidePlan, lesion_category, plan_slide
    from pcam_scan.synth.slide_writer import SynthSlide, write_planned_slide, write_synthetic_slide
    from pcam_scan.synth.spec import SlideSpec, SynthSpec

_MODULE_OF = {
    "SynthProgress": "dataset",
    "write_synthetic_dataset": "dataset",
    "write_ground_truth": "ground_truth",
    "write_lesion_mask": "ground_truth",
    "Lesion": "layout",
    "SlidePlan": "layout",
    "lesion_category": "layout",
    "plan_slide": "layout",
    "SynthSlide": "slide_writer",
    "write_planned_slide": "slide_writer",
    "write_synthetic_slide": "slide_writer",
    "SlideSpec": "spec",
    "SynthSpec": "spec",
}
__all__ = [
    "Lesion",
    "SlidePlan",
    "SlideSpec",
    "SynthProgress",
    "SynthSlide",
    "SynthSpec",
    "lesion_category",
    "plan_slide",
    "write_ground_truth",
    "write_lesion_mask",
    "write_planned_slide",
    "write_synthetic_dataset",
    "write_synthetic_slide",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
