"""The settings of a scan, frozen and self-validating, and which of them change the results.

Each setting has one definition and one default here (the model's in
`pcam_scan.model.settings`); the command line takes its defaults from these dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from pcam_scan.defaults import STRIDE_PX
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.settings import SCAN_CPU_THREADS, PredictorSettings
from pcam_scan.slide import MPP_PLAUSIBLE_UM_PX
from pcam_scan.store.schema import DEFAULT_BLOCK_CELLS
from pcam_scan.tissue import TissueSettings

DEFAULT_STRIDE_PX = STRIDE_PX


@dataclass(frozen=True)
class ScanSettings:
    """What the user asked for. `identity()` holds the part that changes the heatmaps.

    The model's batch size, `compile` and device change speed, not results, so a store scanned
    with a batch size of 256 can be resumed with 1024.
    """

    stride_px: int = DEFAULT_STRIDE_PX
    block_cells: int = DEFAULT_BLOCK_CELLS
    mpp_override_um_px: float | None = None
    tissue: TissueSettings = field(default_factory=TissueSettings)
    model: PredictorSettings = field(default_factory=lambda: PredictorSettings(cpu_threads=SCAN_CPU_THREADS))

    def __post_init__(self) -> None:
        if self.model.cpu_threads is None:
            raise ConfigError("a scan's model needs a fixed CPU thread count (results depend on it)")
        if self.block_cells < 1 or self.block_cells > 256:
            raise ConfigError(f"block size {self.block_cells} cells must lie in 1..256")
        low, high = MPP_PLAUSIBLE_UM_PX
        if self.mpp_override_um_px is not None and not low <= self.mpp_override_um_px <= high:
            raise ConfigError(f"--mpp {self.mpp_override_um_px} is outside the plausible {low}-{high} um/px")

    def geometry(self, model_geometry: PatchGeometry) -> PatchGeometry:
        """The model's patch geometry (its label rule included) with this scan's stride."""
        return dataclasses.replace(model_geometry, stride_px=self.stride_px)

    def identity(self) -> dict[str, object]:
        """The settings that change what is written: part of the store's run identity."""
        return {
            "stride_px": self.stride_px,
            "block_cells": self.block_cells,
            "tta": self.model.tta,
            "mpp_override_um_px": self.mpp_override_um_px,
            "tissue": asdict(self.tissue),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> ScanSettings:
        """The settings from `dataclasses.asdict` output (a submitted job's JSON)."""
        values = dict(doc)
        tissue = dict(values.pop("tissue"))  # type: ignore[call-overload]
        tissue["otsu_band"] = tuple(tissue["otsu_band"])
        model = PredictorSettings(**values.pop("model"))  # type: ignore[arg-type]
        return cls(**values, tissue=TissueSettings(**tissue), model=model)  # type: ignore[arg-type]
