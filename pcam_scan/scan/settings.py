"""A scan's settings, as asked for and as resolved: the one object its results depend on.

`ScanSettings` is what the user asked for (the CLI's options, or an API call's arguments),
validated on construction; each field's default is declared here once (the model's batch size in
`pcam_scan.model.settings`) and the command line reads its defaults from these dataclasses.
`ScanRun` is a scan resolved once against its checkpoint: the settings, the model, and the patch
geometry with the stride. Everything below the entry point (planning, reads, the model stage,
writes, the store's run identity) takes the `ScanRun` whole and never merges a default again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from pcam_scan.defaults import BLOCK_CELLS, STAIN_METHODS
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.settings import SCAN_CPU_THREADS, PredictorSettings
from pcam_scan.qc.settings import QcSettings
from pcam_scan.slide_backends import DEFAULT_SLIDE_BACKEND, check_backend_name
from pcam_scan.stain import StainTarget
from pcam_scan.tissue import TissueSettings
from pcam_scan.validation import check_mpp

MAX_BLOCK_CELLS = 256
"""The largest block side: a block is one Zarr chunk and one read, 256 x 256 cells = 24k px."""


def _scan_predictor() -> PredictorSettings:
    return PredictorSettings(cpu_threads=SCAN_CPU_THREADS)


@dataclass(frozen=True)
class ScanSettings:
    """What the user asked for. Batch size, `compile` and device change speed, not results, so
    a store scanned with a batch size of 256 can be resumed with 1024 (`ScanRun.identity`).

    `stride_px` None means the model's label size: every cell of the model's label grid (32 px
    for PCam), the faithful default; a coarser stride is faster. `slide_backend` (one of
    `pcam_scan.slide_backends.SLIDE_BACKENDS`) picks the library that decodes the slides; every
    choice gives the same heatmaps, so it is not part of the identity (each slide's backend is
    recorded in the store).

    `qc` None turns slide quality control off (`--no-qc`). QC adds arrays beside `prob` and never
    changes it, so its settings go into the store's slide attributes, not into the identity.
    """

    stride_px: int | None = None
    block_cells: int = BLOCK_CELLS
    mpp_override_um_px: float | None = None
    slide_backend: str = DEFAULT_SLIDE_BACKEND
    tissue: TissueSettings = field(default_factory=TissueSettings)
    predictor: PredictorSettings = field(default_factory=_scan_predictor)
    qc: QcSettings | None = field(default_factory=QcSettings)
    stain_normalise: str | None = None
    """None: regions as read; "macenko": normalised to `stain_reference` (pcam_scan.stain)."""
    stain_reference: str | None = None

    def __post_init__(self) -> None:
        if self.stain_normalise is not None and self.stain_normalise not in STAIN_METHODS:
            raise ConfigError(f"--stain-normalise {self.stain_normalise!r} is not one of {', '.join(STAIN_METHODS)}")
        if (self.stain_normalise is None) != (self.stain_reference is None):
            raise ConfigError("--stain-normalise and --stain-reference go together: give both or neither")
        if self.predictor.cpu_threads is None:
            raise ConfigError("a scan's model needs a fixed CPU thread count (results depend on it)")
        if not 1 <= self.block_cells <= MAX_BLOCK_CELLS:
            raise ConfigError(f"block size {self.block_cells} cells must lie in 1..{MAX_BLOCK_CELLS}")
        if self.stride_px is not None and self.stride_px < 1:
            raise ConfigError(f"stride {self.stride_px} px must be at least 1")
        if self.mpp_override_um_px is not None:
            check_mpp("--mpp", self.mpp_override_um_px)
        check_backend_name(self.slide_backend)

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> ScanSettings:
        """The settings from `dataclasses.asdict` output (a submitted job's JSON)."""
        values = dict(doc)
        tissue = dict(values.pop("tissue"))  # type: ignore[call-overload]
        tissue["otsu_band"] = tuple(tissue["otsu_band"])
        predictor = PredictorSettings(**values.pop("predictor"))  # type: ignore[arg-type]
        qc_doc = values.pop("qc", {})
        qc = QcSettings.from_dict(dict(qc_doc)) if isinstance(qc_doc, dict) else None
        return cls(**values, tissue=TissueSettings(**tissue), predictor=predictor, qc=qc)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelRef:
    """The checkpoint a run scans with: a path every worker can read, and the sha256 of its
    weights, which every model stage checks so a file replaced mid-run cannot mix two models."""

    checkpoint_path: str
    model_id: str
    temperature: float | None = None
    """The checkpoint's calibration temperature: same weights (model id), other probabilities."""
    calibration_fitted_on: str | None = None
    """What the temperature was fitted on, in words, for the store's record (not the identity)."""


@dataclass(frozen=True)
class ScanRun:
    """A scan resolved once (`resolve`): everything its results depend on, passed whole to the
    executors and the stages. `geometry` is the model's patch geometry with the scan's stride,
    the only place the two meet."""

    settings: ScanSettings
    model: ModelRef
    geometry: PatchGeometry
    stain: StainTarget | None = None
    """The stain normalisation's target, fitted once on the reference image; None when off."""

    @classmethod
    def resolve(cls, settings: ScanSettings, model: ModelRef, model_geometry: PatchGeometry) -> ScanRun:
        """The run of these settings with this model; a stride the model's geometry cannot take,
        or a stain reference that cannot be fitted, is refused here, before any store or
        cluster is touched."""
        stride_px = model_geometry.label_px if settings.stride_px is None else settings.stride_px
        stain = None
        if settings.stain_normalise is not None and settings.stain_reference is not None:
            from pcam_scan.stain import fit_stain_target

            stain = fit_stain_target(settings.stain_normalise, settings.stain_reference)
        return cls(settings, model, dataclasses.replace(model_geometry, stride_px=stride_px), stain)

    @property
    def predictor(self) -> PredictorSettings:
        return self.settings.predictor

    def identity(self) -> dict[str, object]:
        """The settings that change what is written: with the model id, the store's run
        identity (its settings hash). The keys are those of every store written since the
        first release, so resumes of older stores keep working; a setting added since is a key
        only when it is not its default (an uncalibrated model, no stain normalisation)."""
        identity: dict[str, object] = {
            "stride_px": self.geometry.stride_px,
            "block_cells": self.settings.block_cells,
            "tta": self.predictor.tta,
            "mpp_override_um_px": self.settings.mpp_override_um_px,
            "tissue": asdict(self.settings.tissue),
        }
        if self.model.temperature is not None:
            identity["temperature"] = self.model.temperature
        if self.stain is not None:
            identity["stain_normalise"] = self.stain.identity()
        return identity
