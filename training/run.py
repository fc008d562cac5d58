"""One training run end to end: recipe, evaluation, checkpoint, report.

The checkpoint's metadata carries the same metrics as `metrics.json` (accuracy, ROC AUC and
loss on valid and, when present, test; the valid accuracy after the frozen stage; the valid ECE
before and after temperature scaling), so a model file always says how good it was when it was
made and on what data. The temperature is fitted on the valid split (`training.calibration`).
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcam_scan.errors import ConfigError
from training.calibration import fit_calibration, plot_calibration
from training.export import checkpoint_metadata, export_checkpoint, learner_predictions, round_trip_max_abs_diff
from training.fastai_api import FASTAI_VERSION
from training.metrics import SplitPredictions
from training.recipe import RecipeResult, run_recipe
from training.report import (
    CONFUSION_PNG,
    LOSSES_PNG,
    LR_FIND_PNG,
    METRICS_JSON,
    TOP_LOSSES_PNG,
    plot_confusion,
    plot_losses,
    plot_lr_find,
    plot_top_losses,
    write_metrics_json,
)
from training.settings import TrainSettings
from training.sources import TrainingData

RECIPE = "fastai: lr_find; fit_one_cycle frozen; unfreeze; fit_one_cycle slice(lr/10, lr)"
ROUND_TRIP_PATCHES = 64


@dataclass(frozen=True)
class TrainOutcome:
    """Where the model and the report went, the model id, and the metrics document."""

    checkpoint: Path
    model_id: str
    report_dir: Path
    metrics: dict[str, Any]


def _frozen_accuracy(result: RecipeResult) -> dict[str, float]:
    for stage in result.stages:
        if stage.name == "frozen" and stage.epochs and "accuracy" in stage.epochs[-1]:
            return {"frozen_valid_accuracy": stage.epochs[-1]["accuracy"]}
    return {}


def _details(settings: TrainSettings, data: TrainingData, result: RecipeResult) -> dict[str, str]:
    counts = data.counts()
    return {
        "recipe": RECIPE,
        "split_rule": data.split_rule,
        "counts": ", ".join(f"{split} {c['normal']}+{c['tumour']}" for split, c in counts.items()),
        "lr": f"{result.lr:.4g}",
        "batch_size": str(result.batch_size),
        "precision": result.precision,
        "device": str(result.device),
        "starting_weights": result.start.description if result.start else "random",
        "fastai": FASTAI_VERSION,
        "torch": torch.__version__,
        **settings.to_details(),
    }


def train_and_export(
    data: TrainingData,
    settings: TrainSettings,
    checkpoint_path: Path,
    report_dir: Path,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    epoch_rows: bool = True,
) -> TrainOutcome:
    """Train with the recipe, evaluate valid (and test), export the checkpoint, write the report.

    `extra` goes into metrics.json as is (e.g. the mining summary).
    """
    if not checkpoint_path.parent.is_dir():
        raise ConfigError(f"cannot write {checkpoint_path}: folder {checkpoint_path.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix="pcam-train-") as workdir:
        result = run_recipe(data, settings, Path(workdir), progress=progress, epoch_rows=epoch_rows)
        # only now: weights refused by the recipe (a pickle) left an empty report folder behind
        report_dir.mkdir(parents=True, exist_ok=True)
        learn = result.learn
        predictions: dict[str, SplitPredictions] = {
            name: learner_predictions(learn, source, name) for name, source in data.named_splits() if name != "train"
        }
        metrics: dict[str, float] = {}
        for split in predictions.values():
            metrics.update(split.checkpoint_metrics())
        metrics.update(_frozen_accuracy(result))
        calibrated = fit_calibration(predictions, data.description)
        metrics.update(calibrated.valid_ece())
        metadata = checkpoint_metadata(
            settings, data, metrics, _details(settings, data, result), calibrated.calibration
        )
        model_id = export_checkpoint(learn, checkpoint_path, metadata)
        sample = data.valid.patches(np.arange(min(ROUND_TRIP_PATCHES, len(data.valid))))
        round_trip = round_trip_max_abs_diff(
            learn, checkpoint_path, sample, device=str(result.device), temperature=metadata.temperature
        )
        plot_calibration(calibrated, report_dir)
        if result.lr_find is not None:
            plot_lr_find(result.lr_find, result.lr, report_dir / LR_FIND_PNG)
        plot_losses(result.stages, report_dir / LOSSES_PNG)
        for name, split in predictions.items():
            plot_confusion(split, report_dir / CONFUSION_PNG.format(split=name))
        top = (
            plot_top_losses(
                learn,
                data.valid,
                predictions["valid"],
                settings.top_losses,
                data.geometry.label_px,
                report_dir / TOP_LOSSES_PNG,
            )
            if settings.top_losses
            else []
        )
    document = {
        "checkpoint": str(checkpoint_path),
        "model_id": model_id,
        "data": {"description": data.description, "split_rule": data.split_rule, "counts": data.counts()},
        "splits": {name: split.summary() for name, split in predictions.items()},
        "checkpoint_metrics": metrics,
        "calibration": calibrated.to_dict(),
        "lr": result.lr,
        "lr_find": None if result.lr_find is None else {"suggestion": result.lr_find.suggestion},
        "stages": [
            {"name": s.name, "lr": s.lr, "epochs": s.epochs, "seconds": s.seconds, "train_images_per_s": s.images_per_s}
            for s in result.stages
        ],
        "batch_size": result.batch_size,
        "device": str(result.device),
        "precision": result.precision,
        "starting_weights": result.start.description if result.start else "random",
        "round_trip_max_abs_diff": round_trip,
        "round_trip_patches": len(sample),
        "top_losses_valid_indices": top,
        "settings": settings.to_details(),
        "versions": {"fastai": FASTAI_VERSION, "torch": torch.__version__, "python": platform.python_version()},
        **(extra or {}),
    }
    write_metrics_json(report_dir / METRICS_JSON, document)
    return TrainOutcome(checkpoint_path, model_id, report_dir, document)
