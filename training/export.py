"""From a fastai learner to a scanner checkpoint, and the check that both predict the same.

The learner's network is the scanner's architecture, so its state dict is saved as is with
`pcam_scan.model.checkpoint.save_checkpoint`; the metadata carries the geometry the patches were
trained at, the input size, the normalisation the data loaders used and the provenance (data,
recipe, metrics). `round_trip_max_abs_diff` runs the same patches through the learner (its
validation pipeline) and through the scanner's `Predictor` on the exported file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import torch

from pcam_scan.model.checkpoint import save_checkpoint
from pcam_scan.model.metadata import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Calibration,
    ModelMetadata,
    Normalisation,
    Provenance,
)
from pcam_scan.model.predictor import Predictor, PredictorSettings
from training.data import eval_loader
from training.fastai_api import Learner
from training.metrics import SplitPredictions
from training.settings import TrainSettings
from training.sources import CLASSES, TUMOUR_INDEX, ArraySource, PatchSource, TrainingData


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def learner_predictions(
    learn: Learner, source: PatchSource, name: str, temperature: float | None = None
) -> SplitPredictions:
    """P(tumour), labels, losses and raw logits of every patch of `source` through the learner's
    validation pipeline (the whole patch resized as the scanner does, normalised, then softmax of
    the logits divided by `temperature` when given, as the scorer of a calibrated checkpoint)."""
    loader = eval_loader(learn.dls, source)
    with learn.no_bar():
        logits, targets, losses = learn.get_preds(dl=loader, with_loss=True, act=_identity)
    logits = logits.float()
    scaled = logits if temperature is None else logits * (1.0 / temperature)
    return SplitPredictions(
        name=name,
        probs=scaled.softmax(dim=1)[:, TUMOUR_INDEX].numpy(),
        targets=targets.numpy().astype(np.int64),
        losses=losses.float().numpy(),
        logits=logits.numpy(),
    )


def checkpoint_metadata(
    settings: TrainSettings,
    data: TrainingData,
    metrics: Mapping[str, float],
    details: Mapping[str, str],
    calibration: Calibration | None = None,
) -> ModelMetadata:
    """The scanner metadata of a model trained by the recipe on `data`."""
    geometry = data.geometry
    return ModelMetadata(
        architecture=settings.architecture,
        classes=CLASSES,
        tumour_index=TUMOUR_INDEX,
        input_px=settings.input_px,
        patch_px=geometry.patch_px,
        label_px=geometry.label_px,
        mpp_um_px=geometry.mpp_um_px,
        label_rule=geometry.label_rule,
        normalisation=Normalisation(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        provenance=Provenance(
            data=data.description,
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            metrics=dict(metrics),
            details=dict(details),
        ),
        calibration=calibration,
    )


def export_checkpoint(learn: Learner, path: str | os.PathLike[str], metadata: ModelMetadata) -> str:
    """Save the learner's network (float32, CPU copy) with `metadata`; returns the model id."""
    return save_checkpoint(learn.model, path, metadata)


def round_trip_max_abs_diff(
    learn: Learner,
    checkpoint: str | os.PathLike[str],
    patches: np.ndarray,
    device: str = "cpu",
    temperature: float | None = None,
) -> float:
    """Largest |P_learner - P_scanner| over `patches` (uint8 NHWC) for an exported checkpoint
    (the learner's logits divided by the checkpoint's `temperature`, when it has one)."""
    source = ArraySource(patches, np.zeros(len(patches), dtype=np.int64))
    ours = learner_predictions(learn, source, "round_trip", temperature).probs
    predictor = Predictor.from_checkpoint(checkpoint, PredictorSettings(device=device))
    with torch.no_grad():
        theirs = predictor.predict(np.ascontiguousarray(patches))
    return float(np.abs(ours - theirs).max()) if len(patches) else 0.0
