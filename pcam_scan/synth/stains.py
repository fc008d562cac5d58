"""H&E colour by Beer-Lambert optical density: the stain vectors and the density -> RGB map.

Kept apart from `texture` (which needs the annotation rasteriser) so that benchmark slide writers
can colour their own textures the same way with nothing but numpy.
"""

from __future__ import annotations

import numpy as np

# Optical density per unit stain (R, G, B): haematoxylin 1.0 ~ (90, 60, 140), eosin 0.5 ~ (235,
# 165, 205). Glass and unstained tissue add a little grey density.
HAEMATOXYLIN_OD = np.array([1.04, 1.45, 0.60], np.float32)
EOSIN_OD = np.array([0.16, 0.87, 0.44], np.float32)
GLASS_OD = 0.061
TISSUE_OD = 0.03


def density_to_rgb(density: np.ndarray) -> np.ndarray:
    """Optical density to 8-bit RGB: 255 * 10^-... as transmitted light, rounded."""
    rgb = 255.0 * np.exp(-np.maximum(density, 0.0))
    pixels: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return pixels
