"""The model of a scan run, loaded where it runs (a Ray actor, or this process)."""

from __future__ import annotations

from pcam_scan.errors import CheckpointError
from pcam_scan.model.predictor import Predictor
from pcam_scan.scan.settings import ScanRun


def load_run_predictor(run: ScanRun) -> Predictor:
    """The run's model, checked against the run's model id, so a checkpoint replaced mid-run
    cannot mix two models in one store."""
    path = run.model.checkpoint_path
    predictor = Predictor.from_checkpoint(path, run.predictor)
    if predictor.model_id != run.model.model_id:
        raise CheckpointError(f"{path} changed during the run (model id {predictor.model_id})")
    if predictor.metadata.temperature != run.model.temperature:  # same weights, other calibration
        raise CheckpointError(f"{path} changed during the run (temperature {predictor.metadata.temperature})")
    return predictor
