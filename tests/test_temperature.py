"""A calibration temperature in the checkpoint: stored, applied by the scorer, recorded by a scan,
written by `pcam-scan calibrate`; a checkpoint without one behaves as before."""

from __future__ import annotations

import dataclasses
import json
import shutil
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
from pcam_scan.wording import NOT_CALIBRATED

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
    assert meta.calibration.nll_before is not None and meta.calibration.nll_after is not None
    # the fitted temperature minimises the NLL of these patches: never above T = 1's
    assert meta.calibration.nll_after <= meta.calibration.nll_before
    assert doc["after"]["nll"] == meta.calibration.nll_after
    assert main(["model-info", str(out)]) == 0
    table = capsys.readouterr().out
    assert (
        f"calibrated (T={meta.calibration.temperature:.4g}, on PCam HDF5 folder {data}, valid split, 40 patches, NLL"
        in table
    )
    assert main(["model-info", str(tiny_checkpoint), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"].startswith("not calibrated")


def test_older_calibrations_without_nll_still_load_and_say_what_they_were_fitted_on() -> None:
    meta = read_metadata(FIXTURE).to_dict()
    cal = {"temperature": 2.0, "data": "PCam valid, 10 patches", "date": "2026-01-01"}
    loaded = ModelMetadata.from_dict({**meta, "calibration": cal}).calibration
    assert loaded is not None and loaded.nll_before is None
    assert loaded.describe() == "calibrated (T=2, on PCam valid, 10 patches, 2026-01-01)"
    with_nll = ModelMetadata.from_dict({**meta, "calibration": {**cal, "nll_before": 0.7, "nll_after": 0.5}})
    assert with_nll.to_dict()["calibration"] == {**cal, "nll_before": 0.7, "nll_after": 0.5}
    with pytest.raises(CheckpointError, match="nll_after"):
        ModelMetadata.from_dict({**meta, "calibration": {**cal, "nll_before": 0.7, "nll_after": -1.0}})


def test_a_scan_records_on_what_data_its_model_was_calibrated(
    tmp_path: Path, tiny_checkpoint: Path, synth_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's root records the calibration's data; diagnose and the viewer's diagnosis card
    say it; an uncalibrated scan says "not calibrated", and a store from before the record
    (format 1) says so too, or "data not recorded" when its settings hold a temperature."""
    from starlette.testclient import TestClient

    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import model_calibration
    from pcam_scan.viewer.app import create_app
    from pcam_scan.viewer.catalog import ViewerSettings

    calibrated = tmp_path / "calibrated.safetensors"
    write_calibrated(load_checkpoint(tiny_checkpoint), calibrated, 2.5, "test patches, 12 patches", 0.9, 0.6)
    fitted_on = read_metadata(calibrated).calibration.fitted_on()  # type: ignore[union-attr]
    assert fitted_on.startswith("test patches, 12 patches, NLL 0.9000 -> 0.6000, ")
    expected = f"calibrated (T=2.5, on {fitted_on})"
    slide = tmp_path / "normal_001.tif"
    shutil.copyfile(synth_dataset / "normal_001.tif", slide)
    stores = {}
    for name, model in (("calibrated", calibrated), ("plain", tiny_checkpoint)):
        stores[name] = tmp_path / f"{name}.zarr"
        argv = ["scan", str(slide), "--model", str(model), "--store", str(stores[name]), "--in-process"]
        assert main([*argv, "--block-cells", "16"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(stores["calibrated"]), "--out", str(tmp_path / "d.csv")]) == 0
    assert expected in capsys.readouterr().out
    assert main(["diagnose", str(stores["plain"]), "--out", str(tmp_path / "p.csv")]) == 0
    assert "not calibrated" in capsys.readouterr().out
    slide.unlink()  # the card needs no slide file (and the viewer then keeps none open)
    client = TestClient(create_app(ViewerSettings(str(stores["calibrated"]))), base_url="http://127.0.0.1")
    assert client.get("/api/slides/normal_001").json()["calibration"] == expected
    recorded = HeatmapStore.open(str(stores["calibrated"])).recorded_calibration()
    assert recorded is not None and (recorded.temperature, recorded.fitted_on) == (2.5, fitted_on)
    assert HeatmapStore.open(str(FIXTURE.parent / "store")).recorded_calibration() is None
    assert model_calibration(HeatmapStore.open(str(FIXTURE.parent / "store"))) == NOT_CALIBRATED


def test_a_store_without_the_record_but_with_a_temperature_says_the_data_was_not_recorded(tmp_path: Path) -> None:
    from pcam_scan.store import HeatmapStore, RunIdentity
    from pcam_scan.store.queries import model_calibration

    HeatmapStore.open(str(tmp_path / "s.zarr"), RunIdentity("m", {"temperature": 1.5}), mode="a")
    assert model_calibration(HeatmapStore.open(str(tmp_path / "s.zarr"))) == (
        "calibrated (T=1.5, on data not recorded)"
    )


def test_calibrate_cli_on_annotated_slides(
    tmp_path: Path, tiny_checkpoint: Path, synth_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two annotated slides are enough: the temperature is fitted on every mined patch (training's
    split by slide refused two slides), both classes, every sampled negative kept."""
    out = tmp_path / "cal.safetensors"
    report = tmp_path / "cal.json"
    argv = ["calibrate", str(tiny_checkpoint), "--out", str(out), "--slides", str(synth_dataset)]
    assert main([*argv, "--report", str(report)]) == 0
    cal = read_metadata(out).calibration
    assert cal is not None and cal.nll_before is not None and cal.nll_after is not None
    doc = json.loads(report.read_text())
    n, n_tumour = doc["after"]["n"], doc["after"]["n_positive"]
    assert 0 < n_tumour < n  # both classes, from the tumour slide's annotation and the normal slide
    assert f"patches mined from 2 slides (1 with tumour) in {synth_dataset}, all slides, {n} patches" == cal.data
    assert cal.nll_after <= cal.nll_before
    assert f"fitted on {cal.data}" in capsys.readouterr().out
    assert read_metadata(tiny_checkpoint).calibration is None  # the input is never written
