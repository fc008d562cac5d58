"""Small real pyramidal TIFFs for tests that need an exact drawing (a square, a tissue band)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def write_pyramid(path: Path, level0: np.ndarray, mpp_um_px: float, n_levels: int = 4) -> Path:
    """A tiled, deflate-compressed generic TIFF with downsample-2 levels, OpenSlide-readable."""
    image = level0
    with tifffile.TiffWriter(path) as tif:
        for index in range(n_levels):
            px_per_cm = 10_000.0 / (mpp_um_px * 2**index)
            tif.write(
                image,
                tile=(64, 64),
                compression="zlib",
                photometric="rgb",
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=1 if index else 0,
            )
            h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
            image = image[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8)
    return path
