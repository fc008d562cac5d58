"""The settings of a scan, frozen and self-validating, and which of them change the results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.slide import MPP_PLAUSIBLE_UM_PX
from pcam_scan.tissue import TissueSettings


@dataclass(frozen=True)
class ScanSettings:
    """What the user asked for. `identity()` holds the part that changes the heatmaps.

    `batch_size`, `compile` and the device change speed, not results, so a store scanned with
    a batch size of 256 can be resumed with 1024.
    """

    stride_px: int = 32
    block_cells: int = 32
    tta: bool = False
    batch_size: int = 256
    compile: bool = False
    mpp_override_um_px: float | None = None
    tissue: TissueSettings = field(default_factory=TissueSettings)

    def __post_init__(self) -> None:
        if self.block_cells < 1 or self.block_cells > 256:
            raise ConfigError(f"block size {self.block_cells} cells must lie in 1..256")
        if self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size} must be positive")
        low, high = MPP_PLAUSIBLE_UM_PX
        if self.mpp_override_um_px is not None and not low <= self.mpp_override_um_px <= high:
            raise ConfigError(f"--mpp {self.mpp_override_um_px} is outside the plausible {low}-{high} um/px")

    def geometry(self, model_geometry: PatchGeometry) -> PatchGeometry:
        """The model's patch geometry with this scan's stride."""
        return PatchGeometry(
            patch_px=model_geometry.patch_px,
            label_px=model_geometry.label_px,
            mpp_um_px=model_geometry.mpp_um_px,
            stride_px=self.stride_px,
        )

    def identity(self) -> dict[str, object]:
        """The settings that change what is written: part of the store's run identity."""
        return {
            "stride_px": self.stride_px,
            "block_cells": self.block_cells,
            "tta": self.tta,
            "mpp_override_um_px": self.mpp_override_um_px,
            "tissue": asdict(self.tissue),
        }
