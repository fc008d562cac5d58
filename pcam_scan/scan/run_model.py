"""The model of a scan run, loaded where it runs (a Ray actor, or this process)."""

from __future__ import annotations

from pcam_scan.errors import CheckpointError
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.cpu_inference import cpu_inference_model
from pcam_scan.model.predictor import Predictor, resolve_device
from pcam_scan.scan.settings import ScanRun


def load_run_predictor(run: ScanRun) -> Predictor:
    """The run's model, checked against the run's model id, so a checkpoint replaced mid-run
    cannot mix two models in one store."""
    (predictor,) = load_run_predictors(run, 1)
    return predictor


def load_run_predictors(run: ScanRun, count: int) -> list[Predictor]:
    """`count` predictors of the run's model (checked as `load_run_predictor` does) that share
    one copy of its weights: one per thread that runs the model, each with its own batches. On
    the CPU that copy is prepared once for CPU inference (`cpu_inference_model`)."""
    path = run.model.checkpoint_path
    device = resolve_device(run.predictor.device)
    loaded = load_checkpoint(path, device)
    if device.type == "cpu":
        loaded = cpu_inference_model(loaded)  # prepared once: the predictors share its weights
    predictors = [Predictor(loaded, run.predictor) for _ in range(count)]
    predictor = predictors[0]
    if predictor.model_id != run.model.model_id:
        raise CheckpointError(f"{path} changed during the run (model id {predictor.model_id})")
    if predictor.metadata.temperature != run.model.temperature:  # same weights, other calibration
        raise CheckpointError(f"{path} changed during the run (temperature {predictor.metadata.temperature})")
    return predictors
