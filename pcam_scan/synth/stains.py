"""H&E colour by Beer-Lambert optical density: the stain vectors and the density -> RGB map, and
presets that stand for other labs ("centres").

A preset changes the two stain vectors (the colour of one unit of each stain) and scales the
amount of each stain, the two ways labs differ (dye batches and recipes, staining times,
section thickness; the reason Camelyon17 comes from five centres). `default` is centre A, the
colour every synthetic slide had before presets existed (bit-identical); `centre-b` is a darker
lab with bluer haematoxylin and purpler, paler eosin; `centre-c` a pale lab with weak, redder
haematoxylin and strong orange eosin. The numbers are chosen to move colour about as far as
Camelyon17's centres differ by eye, not measured from a real lab.

Kept apart from `texture` (which needs the annotation rasteriser) so that benchmark slide writers
can colour their own textures the same way with nothing but numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Optical density per unit stain (R, G, B): haematoxylin 1.0 ~ (90, 60, 140), eosin 0.5 ~ (235,
# 165, 205). Glass and unstained tissue add a little grey density.
HAEMATOXYLIN_OD = np.array([1.04, 1.45, 0.60], np.float32)  # the default preset's (centre A)
EOSIN_OD = np.array([0.16, 0.87, 0.44], np.float32)
GLASS_OD = 0.061
TISSUE_OD = 0.03


@dataclass(frozen=True)
class StainPreset:
    """One lab's stain: OD per unit of each stain (R, G, B) and a factor on each stain's amount."""

    name: str
    haematoxylin_od: tuple[float, float, float]
    eosin_od: tuple[float, float, float]
    haematoxylin_scale: float
    eosin_scale: float
    description: str

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The scaled haematoxylin and eosin OD vectors, float32 (R, G, B)."""
        haem = np.array(self.haematoxylin_od, np.float32) * np.float32(self.haematoxylin_scale)
        eosin = np.array(self.eosin_od, np.float32) * np.float32(self.eosin_scale)
        return haem, eosin


STAIN_PRESETS: dict[str, StainPreset] = {
    p.name: p
    for p in (
        StainPreset("default", (1.04, 1.45, 0.60), (0.16, 0.87, 0.44), 1.0, 1.0, "centre A: the synthetic default"),
        StainPreset(
            "centre-b", (1.30, 1.30, 0.45), (0.32, 0.95, 0.38), 1.3, 0.8, "dark, blue haematoxylin, purple eosin"
        ),
        StainPreset(
            "centre-c", (0.80, 1.45, 0.80), (0.05, 0.80, 0.72), 0.7, 1.35, "pale, red haematoxylin, orange eosin"
        ),
    )
}
DEFAULT_STAIN_PRESET = "default"


def density_to_rgb(density: np.ndarray) -> np.ndarray:
    """Optical density to 8-bit RGB: 255 * 10^-... as transmitted light, rounded."""
    rgb = 255.0 * np.exp(-np.maximum(density, 0.0))
    pixels: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return pixels
