"""Settings of synthetic Camelyon16-like slides: frozen, checked when made.

A bad value is a `ConfigError` with one line that names it, so `pcam-scan synth` with a negative
count, a slide too small to hold tissue or an absurd MPP stops before writing anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING

from pcam_scan.errors import ConfigError
from pcam_scan.validation import check_seed

if TYPE_CHECKING:
    from pcam_scan.synth.artefacts import ArtefactSpec

# Nuclei must span a few pixels for the tumour texture to mean anything, and the scanner reads
# at 0.972 um/px: coarser slides than this are not slides.
MIN_MPP_UM_PX = 0.1
MAX_MPP_UM_PX = 2.0
# A tumour slide must hold a micro-metastasis (>= 0.2 mm) well inside its tissue.
MIN_SIDE_UM = 1000.0
MAX_SIDE_PX = 400_000
MAX_SLIDES = 10_000
STAIN_PRESET_NAMES = ("default", "centre-b", "centre-c")
"""The keys of `pcam_scan.synth.stains.STAIN_PRESETS` (spelled here so `synth --help` needs no numpy)."""


@dataclass(frozen=True)
class SlideSpec:
    """Size, resolution and encoding of one synthetic slide (level 0)."""

    width_px: int = 16_384
    height_px: int = 12_288
    mpp_um_px: float = 0.243
    tile_px: int = 256
    jpeg_quality: int = 90
    stain_preset: str = "default"
    """The lab's stain (`pcam_scan.synth.stains.STAIN_PRESETS`): default is centre A."""

    def __post_init__(self) -> None:
        if not (isinstance(self.mpp_um_px, (int, float)) and math.isfinite(self.mpp_um_px)):
            raise ConfigError(f"--mpp must be a number, got {self.mpp_um_px!r}")
        if not MIN_MPP_UM_PX <= self.mpp_um_px <= MAX_MPP_UM_PX:
            raise ConfigError(
                f"--mpp {self.mpp_um_px} um/px is not a slide resolution: use "
                f"{MIN_MPP_UM_PX} to {MAX_MPP_UM_PX} (nuclei must span a few pixels)"
            )
        for name, value in (("--width", self.width_px), ("--height", self.height_px)):
            if not isinstance(value, Integral) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a whole number of pixels, got {value!r}")
            if value > MAX_SIDE_PX:
                raise ConfigError(f"{name} {value} px is larger than the {MAX_SIDE_PX} px allowed")
            side_um = value * self.mpp_um_px
            if side_um < MIN_SIDE_UM:
                raise ConfigError(
                    f"{name} {value} px at {self.mpp_um_px} um/px is {side_um / 1000:.2f} mm, too "
                    f"small to hold tissue: need at least {MIN_SIDE_UM / 1000:.0f} mm "
                    f"({math.ceil(MIN_SIDE_UM / self.mpp_um_px)} px)"
                )
        if self.tile_px % 16 or not 64 <= self.tile_px <= 2048:
            raise ConfigError(f"tile size {self.tile_px} px must be a multiple of 16 in 64..2048")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"JPEG quality {self.jpeg_quality} must be in 1..100")
        if self.stain_preset not in STAIN_PRESET_NAMES:
            raise ConfigError(f"--stain-preset {self.stain_preset!r} is not one of {', '.join(STAIN_PRESET_NAMES)}")

    @property
    def width_um(self) -> float:
        return self.width_px * self.mpp_um_px

    @property
    def height_um(self) -> float:
        return self.height_px * self.mpp_um_px


@dataclass(frozen=True)
class SynthSpec:
    """A synthetic data set: how many tumour and normal slides, all of one `SlideSpec`, one seed."""

    slide: SlideSpec
    tumour_count: int
    normal_count: int
    seed: int = 0
    patient_count: int = 0
    """Camelyon17-style patients of known pN stage, five node slides each (pcam_scan.synth.patients)."""
    artefacts: ArtefactSpec | None = None
    """Artefacts drawn on every slide, with their true masks on the cell grid (QC's ground truth)."""

    def __post_init__(self) -> None:
        for name, value in (("--tumor", self.tumour_count), ("--normal", self.normal_count)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a count of slides (0 or more), got {value!r}")
        if (
            not isinstance(self.patient_count, Integral)
            or isinstance(self.patient_count, bool)
            or self.patient_count < 0
        ):
            raise ConfigError(f"--patients must be a count of patients (0 or more), got {self.patient_count!r}")
        total = self.tumour_count + self.normal_count + 5 * self.patient_count
        if total == 0:
            raise ConfigError("nothing to write: --tumor, --normal and --patients are all 0")
        if total > MAX_SLIDES:
            raise ConfigError(f"{total} slides asked for; at most {MAX_SLIDES} per data set")
        check_seed("--seed", self.seed)  # the README's range: 0 to 2**32 - 1


def slide_seed(dataset_seed: int, tumour: bool, index: int) -> int:
    """The seed of one slide of a data set: independent streams per (seed, kind, index)."""
    import numpy as np  # here, so that `pcam-scan synth --help` needs no numpy

    sequence = np.random.SeedSequence([int(dataset_seed), int(tumour), int(index)])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])
