"""A calibration temperature in the checkpoint: stored, applied by the scorer, recorded by a scan,
written by `pcam-scan calibrate`; a checkpoint without one behaves as before."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pcam_scan.cli import main
from pcam_scan.errors import CheckpointError, ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.calibrate import check_calibrated_output, write_calibrated
from pcam_scan.model.checkpoint import load_checkpoint, read_metadata
from pcam_scan.model.metadata import Calibration, ModelMetadata
from pcam_scan.model.predictor import Predictor
from pcam_scan.scan.settings import ModelRef, ScanRun, ScanSettings

FIXTURE = Path(__file__).parent / "data" / "store-v1" / "tiny.safetensors"


def _patches(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)


def test_an_old_checkpoint_loads_uncalibrated_and_writes_the_same_document() -> None:
    meta = read_metadata(FIXTURE)
    assert meta.calibration is None and meta.temperature is None
    assert "calibration" not in meta.to_dict()
    assert ModelMetadata.from_json(meta.to_json()) == meta


def test_the_scorer_divides_the_logits_by_the_temperature(tmp_path: Path, tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    out = tmp_path / "calibrated.safetensors"
    model_id = write_calibrated(loaded, out, 2.5, "test patches")
    assert model_id == loaded.model_id  # same weights
    patches = _patches(8, seed=1)
    with torch.no_grad():
        x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(loaded.metadata.normalisation.mean).view(1, 3, 1, 1)
        std = torch.tensor(loaded.metadata.normalisation.std).view(1, 3, 1, 1)
        logits = loaded.network((x - mean) / std).double()
    expected = torch.softmax(logits / 2.5, dim=1)[:, loaded.metadata.tumour_index].numpy()
    raw = torch.softmax(logits, dim=1)[:, loaded.metadata.tumour_index].numpy()
    got = Predictor.from_checkpoint(out).predict(patches)
    assert got == pytest.approx(expected, abs=1e-5)
    assert Predictor.from_checkpoint(tiny_checkpoint).predict(patches) == pytest.approx(raw, abs=1e-5)
    assert read_metadata(out).calibration.temperature == 2.5  # type: ignore[union-attr]


def test_the_settings_hash_names_the_temperature_only_when_there_is_one() -> None:
    geometry = PatchGeometry()
    plain = ScanRun.resolve(ScanSettings(), ModelRef("m", "id"), geometry).identity()
    scaled = ScanRun.resolve(ScanSettings(), ModelRef("m", "id", 2.0), geometry).identity()
    assert "temperature" not in plain
    assert scaled == {**plain, "temperature": 2.0}


def test_a_bad_calibration_is_refused() -> None:
    meta = read_metadata(FIXTURE).to_dict()
    with pytest.raises(CheckpointError, match="temperature"):
        ModelMetadata.from_dict({**meta, "calibration": {"temperature": 0.0, "data": "x", "date": "2026-01-01"}})
    with pytest.raises(CheckpointError, match="unknown calibration"):
        ModelMetadata.from_dict(
            {**meta, "calibration": {"temperature": 2.0, "data": "x", "date": "2026-01-01", "t": 1}}
        )
    good = ModelMetadata.from_dict({**meta, "calibration": {"temperature": 2.0, "data": "x", "date": "2026-01-01"}})
    assert good.calibration == Calibration(2.0, "x", "2026-01-01")
    assert dataclasses.replace(good, calibration=None).to_dict() == meta


def test_calibrate_never_writes_its_input(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="input checkpoint"):
        check_calibrated_output(tiny_checkpoint, tiny_checkpoint, overwrite=True)
    existing = tmp_path / "x.safetensors"
    existing.write_bytes(b"")
    with pytest.raises(ConfigError, match="exists"):
        check_calibrated_output(tiny_checkpoint, existing, overwrite=False)


def test_calibrate_cli_on_a_pcam_folder(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_training import write_pcam_folder

    data = tmp_path / "pcam"
    write_pcam_folder(data, {"train": 8, "valid": 40})
    out = tmp_path / "cal.safetensors"
    report = tmp_path / "cal.json"
    code = main(["calibrate", str(tiny_checkpoint), "--out", str(out), "--pcam", str(data), "--report", str(report)])
    assert code == 0
    meta = read_metadata(out)
    assert meta.calibration is not None and "valid split, 40 patches" in meta.calibration.data
    doc = json.loads(report.read_text())
    assert doc["temperature"] == meta.calibration.temperature
    assert doc["after"]["n"] == 40
    assert "temperature" in capsys.readouterr().out
    assert main(["calibrate", str(tiny_checkpoint), "--out", str(out), "--pcam", str(data)]) == 2
    assert main(["model-info", str(out)]) == 0
    assert "fitted on" in capsys.readouterr().out
