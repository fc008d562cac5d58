"""The null model: a registered architecture that scores a patch by its mean intensity, for benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcam_scan.cli import main
from pcam_scan.errors import ConfigError
from pcam_scan.model.checkpoint import load_checkpoint, read_metadata
from pcam_scan.model.names import NULL_MODEL
from pcam_scan.model.predictor import Predictor, PredictorSettings
from pcam_scan.model.random_model import calibration_patches, write_random_checkpoint
from pcam_scan.store import HeatmapStore
from pcam_scan.store.schema import SlideState


@pytest.fixture(scope="module")
def null_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("null") / "null.safetensors"
    write_random_checkpoint(path, NULL_MODEL)
    return path


def test_scores_a_patch_by_its_normalised_mean_intensity(null_checkpoint: Path) -> None:
    patches = calibration_patches(96, 12, seed=9)
    meta = read_metadata(null_checkpoint)
    normalised = (patches / 255.0 - np.array(meta.normalisation.mean)) / np.array(meta.normalisation.std)
    expected = 1.0 / (1.0 + np.exp(normalised.mean(axis=(1, 2, 3))))  # sigmoid(-mean)
    probs = Predictor.from_checkpoint(null_checkpoint, PredictorSettings(device="cpu")).predict(patches)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    dark, light = np.full((1, 96, 96, 3), 40, np.uint8), np.full((1, 96, 96, 3), 230, np.uint8)
    predictor = Predictor.from_checkpoint(null_checkpoint, PredictorSettings(device="cpu"))
    assert predictor.predict(dark)[0] > 0.5 > predictor.predict(light)[0]


def test_every_null_checkpoint_has_the_same_weights_whatever_the_seed(null_checkpoint: Path, tmp_path: Path) -> None:
    other = write_random_checkpoint(tmp_path / "other.safetensors", NULL_MODEL, seed=123)
    loaded = load_checkpoint(null_checkpoint)
    assert other == loaded.model_id
    assert loaded.n_parameters == 4  # a 1 -> 2 linear map: no compute worth the name
    assert "null model" in loaded.metadata.provenance.data


def test_training_refuses_the_null_model() -> None:
    from training.settings import TrainSettings

    with pytest.raises(ConfigError, match="not one of"):
        TrainSettings(architecture=NULL_MODEL, pretrained=False)


def test_the_scan_runs_the_null_model(synth_dataset: Path, null_checkpoint: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "null.zarr"
    slide = synth_dataset / "tumor_001.tif"
    assert main(["scan", str(slide), "--model", str(null_checkpoint), "--store", str(store_path), "--in-process"]) == 0
    store = HeatmapStore.open(str(store_path))
    assert store.slide_status("tumor_001").state is SlideState.COMPLETE
    prob = store.read_prob("tumor_001", 0)
    scored = prob[np.isfinite(prob)]
    assert scored.size > 0 and np.all((scored > 0) & (scored < 1)) and np.ptp(scored) > 0


def test_checking_a_null_checkpoint_does_not_import_the_compiler(null_checkpoint: Path) -> None:
    """Its weights once came from torch.arange, which on the meta device (the checkpoint check)
    imports torch._dynamo: seconds of every scan's driver and model actor start."""
    import subprocess
    import sys

    code = (
        "import sys; from pcam_scan.model.checkpoint import load_checkpoint; "
        f"load_checkpoint({str(null_checkpoint)!r}); print('torch._dynamo' in sys.modules)"
    )
    checked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert checked.stdout.strip() == "False"
