"""Untrained but real models: seeded networks and checkpoints for tests, demos and benchmarks.

A fresh network's BatchNorm running statistics (mean 0, var 1) let activations blow up or vanish
through a deep untrained network, so every probability would be 0 or 1. `random_network` sets
them from one train-mode pass over seeded image-like patches (flat colours, blobs and noise at
several scales) through the real preprocessing, which keeps outputs well scaled and varying from
patch to patch, like a trained model's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from torch import nn

from pcam_scan.model.architectures import build_network
from pcam_scan.model.checkpoint import save_checkpoint
from pcam_scan.model.metadata import ModelMetadata, Provenance
from pcam_scan.model.names import NULL_MODEL, TINY_CNN
from pcam_scan.model.scoring import PatchScorer

CALIBRATION_PATCHES = 24


def calibration_patches(patch_px: int, n: int, seed: int) -> np.ndarray:
    """`n` uint8 NHWC patches: random colour fields of 1..patch_px cells per side, plus noise."""
    rng = np.random.default_rng(seed)
    sides = [s for s in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96) if s <= patch_px] + [patch_px]
    patches = np.empty((n, patch_px, patch_px, 3), dtype=np.uint8)
    for i in range(n):
        side = sides[i % len(sides)]
        coarse = rng.uniform(0, 255, size=(side, side, 3))
        rows = np.arange(patch_px) * side // patch_px
        field = coarse[rows][:, rows]
        noise = rng.normal(0, rng.uniform(0, 40), size=field.shape)
        patches[i] = np.clip(field + noise, 0, 255).astype(np.uint8)
    return patches


def random_network(metadata: ModelMetadata, seed: int = 0) -> nn.Module:
    """A seeded untrained network for `metadata`, BatchNorm calibrated, in eval mode.

    The global torch RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network(metadata.architecture, metadata.n_classes)
    batchnorms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.momentum = None  # cumulative average over one batch: running stats = its stats
    scorer = PatchScorer(network, metadata).train()
    patches = calibration_patches(metadata.patch_px, CALIBRATION_PATCHES, seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks of the train-mode pass
        scorer(torch.from_numpy(patches))
    for bn, momentum in zip(batchnorms, momenta):
        bn.momentum = momentum
    return network.eval()


def write_random_checkpoint(
    path: str | os.PathLike[str],
    architecture: str = TINY_CNN,
    *,
    input_px: int = 96,
    seed: int = 0,
    **metadata_fields: Any,
) -> str:
    """Write an untrained but real checkpoint and return its model id.

    With `architecture` "null" the weights are fixed (the seed changes nothing): the null model.

    `metadata_fields` override the other `ModelMetadata` fields (classes, mpp_um_px, provenance...).
    """
    untrained = (
        "none: the null model (mean intensity, fixed weights), for benchmarks only"
        if architecture == NULL_MODEL
        else f"none: random initialisation (seed {seed}), untrained"
    )
    fields: dict[str, Any] = {
        "provenance": Provenance(
            data=untrained,
            date=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
        **metadata_fields,
    }
    metadata = ModelMetadata(architecture=architecture, input_px=input_px, **fields)
    return save_checkpoint(random_network(metadata, seed), path, metadata)
