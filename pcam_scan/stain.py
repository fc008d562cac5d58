"""Macenko stain normalisation of scan regions (torchstain), fitted once on a reference image.

The reference's stain matrix and 99th-percentile concentrations (`StainTarget`) are fitted once,
when a scan is resolved, and travel with the run (and into its settings hash); each block's region
is then normalised to them in the read stage, before patches are cut: on the CPU that reads, so
the model stage (the scarce device) does no extra work, and a scan without the option reads
exactly as before (bit-identical heatmaps).

Failure modes (see the README's Stain section): torchstain's Macenko raises on regions with no
or almost no tissue (an empty optical-density set: `LinAlgError`, `IndexError`) and returns
silent garbage on a handful of tissue pixels. A region passes unnormalised unless at least
`MACENKO_MIN_TISSUE_FRACTION` of its pixels (and `MACENKO_MIN_TISSUE_PIXELS`) are tissue by
torchstain's own test (every channel's OD at least `beta`), and any error or numeric warning
inside torchstain also leaves it as read.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcam_scan.defaults import STAIN_METHODS
from pcam_scan.errors import ConfigError

MACENKO_IO = 240  # torchstain's transmitted light intensity
MACENKO_BETA = 0.15  # torchstain's OD threshold of a tissue pixel
MACENKO_MIN_TISSUE_FRACTION = 0.05
MACENKO_MIN_TISSUE_PIXELS = 500


@dataclass(frozen=True)
class StainTarget:
    """What a region is normalised to: the reference's H&E OD matrix (3 x 2, columns H and E),
    its maximal concentrations, and the reference file's sha256 (for the record)."""

    method: str
    he_ref: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    max_c_ref: tuple[float, float]
    reference_sha256: str

    def identity(self) -> dict[str, object]:
        return {
            "method": self.method,
            "he_ref": [list(row) for row in self.he_ref],
            "max_c_ref": list(self.max_c_ref),
            "reference_sha256": self.reference_sha256,
        }


def _macenko() -> Any:
    import torchstain  # numpy backend: no torch import

    return torchstain.normalizers.MacenkoNormalizer(backend="numpy")


def tissue_fraction(rgb: np.ndarray) -> float:
    """Share of pixels torchstain's Macenko counts as tissue (every channel's OD >= beta)."""
    od = -np.log((rgb.astype(np.float32) + 1.0) / MACENKO_IO)
    return float((od >= MACENKO_BETA).all(axis=-1).mean()) if rgb.size else 0.0


def _enough_tissue(rgb: np.ndarray) -> bool:
    fraction = tissue_fraction(rgb)
    return (
        fraction >= MACENKO_MIN_TISSUE_FRACTION and fraction * rgb.shape[0] * rgb.shape[1] >= MACENKO_MIN_TISSUE_PIXELS
    )


def fit_stain_target(method: str, reference: str | Path) -> StainTarget:
    """Fit the normaliser on the reference image (any format Pillow reads, as RGB)."""
    from PIL import Image, UnidentifiedImageError

    if method not in STAIN_METHODS:
        raise ConfigError(f"--stain-normalise {method!r} is not one of {', '.join(STAIN_METHODS)}")
    path = Path(reference)
    try:
        data = path.read_bytes()
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise ConfigError(f"--stain-reference {path}: cannot read it as an image ({err})") from None
    if not _enough_tissue(rgb):
        raise ConfigError(
            f"--stain-reference {path}: too little tissue to fit a stain matrix "
            f"({tissue_fraction(rgb):.1%} of its pixels; give a tissue-rich H&E tile)"
        )
    normaliser = _macenko()
    try:
        with warnings.catch_warnings(), np.errstate(invalid="raise", divide="raise"):
            warnings.simplefilter("error", RuntimeWarning)
            normaliser.fit(rgb, Io=MACENKO_IO, beta=MACENKO_BETA)
    except (np.linalg.LinAlgError, FloatingPointError, RuntimeWarning, IndexError, ValueError) as err:
        raise ConfigError(f"--stain-reference {path}: Macenko could not fit it ({err})") from None
    he = np.asarray(normaliser.HERef, np.float64)
    max_c = np.asarray(normaliser.maxCRef, np.float64).reshape(-1)
    if he.shape != (3, 2) or max_c.shape != (2,) or not (np.isfinite(he).all() and np.isfinite(max_c).all()):
        raise ConfigError(f"--stain-reference {path}: Macenko gave a degenerate stain matrix")
    rows = tuple((float(r[0]), float(r[1])) for r in he)
    return StainTarget(method, rows, (float(max_c[0]), float(max_c[1])), hashlib.sha256(data).hexdigest())  # type: ignore[arg-type]


class StainNormaliser:
    """Normalises regions to a `StainTarget`; one per reading worker (torchstain keeps state)."""

    def __init__(self, target: StainTarget) -> None:
        self.target = target
        self._normaliser = _macenko()
        self._normaliser.HERef = np.asarray(target.he_ref, np.float64)
        self._normaliser.maxCRef = np.asarray(target.max_c_ref, np.float64)
        self.normalised = 0
        self.passed = 0

    def __call__(self, region: np.ndarray) -> np.ndarray:
        """The region normalised, or as it came when it has too little tissue or Macenko fails."""
        if not _enough_tissue(region):
            self.passed += 1
            return region
        try:
            with warnings.catch_warnings(), np.errstate(invalid="raise", divide="raise"):
                warnings.simplefilter("error", RuntimeWarning)
                out, _, _ = self._normaliser.normalize(I=region, Io=MACENKO_IO, beta=MACENKO_BETA, stains=False)
        except (np.linalg.LinAlgError, FloatingPointError, RuntimeWarning, IndexError, ValueError):
            self.passed += 1
            return region
        self.normalised += 1
        return np.ascontiguousarray(out, dtype=np.uint8)
