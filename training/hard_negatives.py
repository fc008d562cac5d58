"""Hard negatives: a previous model's false positives on normal tissue, as a mining option.

The previous checkpoint is run by the scanner's own `Predictor` on patches read exactly as the
miner reads them, so "hard" means hard for the model as the scanner runs it.
"""

from __future__ import annotations

import math

import numpy as np

from pcam_scan.errors import ConfigError
from pcam_scan.model.predictor import Predictor, PredictorSettings
from training.mining import HardNegativeScorer, MiningSettings, SlideCells, read_cell_patches


def predictor_scorer(settings: MiningSettings) -> HardNegativeScorer:
    """A scorer backed by `settings.hard_negatives.checkpoint`, whose geometry must match."""
    hard = settings.hard_negatives
    if hard is None:
        raise ConfigError("no hard-negative settings given")
    predictor = Predictor.from_checkpoint(hard.checkpoint, PredictorSettings(device=hard.device))
    meta = predictor.metadata
    geometry = settings.geometry
    if meta.patch_px != geometry.patch_px or not math.isclose(meta.mpp_um_px, geometry.mpp_um_px, rel_tol=1e-6):
        raise ConfigError(
            f"hard-negative model {hard.checkpoint} takes {meta.patch_px} px patches at "
            f"{meta.mpp_um_px} um/px, but mining cuts {geometry.patch_px} px at {geometry.mpp_um_px} um/px"
        )

    def score(cells: SlideCells, cell_rc: np.ndarray) -> np.ndarray:
        patches = read_cell_patches(cells.case, cells.grid, cell_rc, settings)
        return predictor.predict(patches) if len(patches) else np.zeros(0, np.float32)

    return score
