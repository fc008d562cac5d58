"""Training: PCam HDF5 and Kaggle sources, the fastai recipe end to end on tiny data, the export
round trip (fastai learner vs the scanner's predictor), starting weights, splits and bad input.

Tiny on purpose: the tiny-cnn architecture, a few batches, one epoch per stage, on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py  # the train extra's; PCam files are HDF5
import numpy as np
import pytest
import tifffile
import torch

from pcam_scan.cli import main as scan_main
from pcam_scan.errors import CheckpointError, ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.architectures import RESNET50_FASTAI, TINY_CNN, build_network
from pcam_scan.model.checkpoint import load_checkpoint, read_metadata
from pcam_scan.model.predictor import Predictor, PredictorSettings
from training.export import checkpoint_metadata, export_checkpoint, learner_predictions
from training.fastai_api import set_seed
from training.kaggle import read_kaggle_folder
from training.pcam_h5 import PatchMeta, read_pcam_folder, split_paths, write_pcam_split
from training.pretrained import StartingWeights, find_starting_weights, load_starting_weights
from training.recipe import build_network_for, run_recipe
from training.settings import TrainSettings
from training.sources import ArraySource, TrainingData
from training.splits import random_split


def pcam_like_patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 96, 96, 3) pink 'stroma' with sparse small nuclei; label-1 patches carry large
    dark nuclei crowded in the centre. Labels alternate 0, 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    patches = np.empty((n, 96, 96, 3), dtype=np.uint8)
    labels = np.arange(n) % 2
    for i in range(n):
        img = np.array([232.0, 182.0, 212.0]) + rng.normal(0, 8, (96, 96, 3))
        count, radius, spread = (40, 7, 28) if labels[i] else (12, 3, 48)
        for _ in range(count):
            cy, cx = rng.normal(48, spread, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
            img[disc] = (90, 40, 130)
        patches[i] = np.clip(img, 0, 255).astype(np.uint8)
    return patches, labels


def write_pcam_folder(folder: Path, sizes: dict[str, int]) -> None:
    """A PCam-layout folder with the official file and dataset names, and meta CSVs."""
    for k, (split, n) in enumerate(sizes.items()):
        x, y = pcam_like_patches(n, seed=k)
        meta = [
            PatchMeta(l0_x=4 * i, l0_y=0, tumour_in_patch=bool(v), label=int(v), slide_id=f"{split}_slide")
            for i, v in enumerate(y)
        ]
        write_pcam_split(folder, split, x, meta)


def tiny_settings(**overrides: object) -> TrainSettings:
    fields: dict[str, object] = {
        "architecture": TINY_CNN,
        "pretrained": False,
        "input_px": 96,
        "frozen_epochs": 1,
        "unfrozen_epochs": 1,
        "batch_size": 16,
        "lr_find_iterations": 8,
        "top_losses": 4,
    }
    fields.update(overrides)
    return TrainSettings(**fields)  # type: ignore[arg-type]


def test_pcam_hdf5_folder_is_read_lazily_with_official_names(tmp_path: Path) -> None:
    write_pcam_folder(tmp_path, {"train": 10, "valid": 6})
    x_path, y_path, _ = split_paths(tmp_path, "train")
    assert x_path.name == "camelyonpatch_level_2_split_train_x.h5"
    with h5py.File(y_path) as fy:
        assert fy["y"].shape == (10, 1, 1, 1)
    data = read_pcam_folder(tmp_path)
    expected_x, expected_y = pcam_like_patches(10, seed=0)
    assert data.test is None
    assert np.array_equal(data.train.labels, expected_y)
    assert np.array_equal(data.train.patch(3), expected_x[3])
    assert np.array_equal(data.train.patches(np.array([7, 2, 7])), expected_x[[7, 2, 7]])
    assert list(data.train.slide_ids) == ["train_slide"] * 10  # type: ignore[attr-defined]
    assert data.counts() == {"train": {"normal": 5, "tumour": 5}, "valid": {"normal": 3, "tumour": 3}}


def test_pcam_folder_errors_name_the_missing_file(tmp_path: Path) -> None:
    write_pcam_folder(tmp_path, {"train": 4})
    with pytest.raises(ConfigError, match="camelyonpatch_level_2_split_valid_x.h5"):
        read_pcam_folder(tmp_path)
    split_paths(tmp_path, "train")[0].unlink()
    with pytest.raises(ConfigError, match="train_x.h5 is missing"):
        read_pcam_folder(tmp_path)


def test_pcam_train_cli_writes_a_checkpoint_the_scanner_loads_and_a_full_report(tmp_path: Path) -> None:
    data_dir = tmp_path / "pcam"
    write_pcam_folder(data_dir, {"train": 64, "valid": 24, "test": 16})
    out = tmp_path / "model.safetensors"
    code = scan_main([
        "train", "--pcam", str(data_dir), "--out", str(out), "--arch", TINY_CNN, "--no-pretrained",
        "--size", "96", "--frozen-epochs", "1", "--epochs", "1", "--batch-size", "16",
        "--lr-find-iterations", "8", "--top-losses", "4", "--quiet",
    ])  # fmt: skip
    assert code == 0
    report = tmp_path / "model_report"
    for name in (
        "lr_find.png",
        "loss_curves.png",
        "confusion_matrix_valid.png",
        "confusion_matrix_test.png",
        "top_losses_gradcam.png",
        "reliability_valid.png",
        "reliability_test.png",
    ):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    metrics = json.loads((report / "metrics.json").read_text())
    loaded = load_checkpoint(out)
    meta = loaded.metadata
    assert loaded.model_id == metrics["model_id"]
    assert (meta.architecture, meta.input_px, meta.patch_px, meta.label_px, meta.mpp_um_px) == (
        TINY_CNN,
        96,
        96,
        32,
        0.972,
    )
    assert meta.label_rule == "pcam-any"  # PCam patches are labelled by PCam's rule
    assert dict(meta.provenance.metrics) == pytest.approx(metrics["checkpoint_metrics"])
    for split, n in (("valid", 24), ("test", 16)):
        summary = metrics["splits"][split]
        assert summary["n"] == n
        assert np.sum(summary["confusion_actual_by_predicted"]) == n
        assert meta.provenance.metrics[f"{split}_accuracy"] == pytest.approx(summary["accuracy"])
        assert meta.provenance.metrics[f"{split}_auc"] == pytest.approx(summary["auc"])
    assert "frozen_valid_accuracy" in meta.provenance.metrics
    assert [s["name"] for s in metrics["stages"]] == ["frozen", "unfrozen"]
    assert metrics["stages"][1]["lr"].startswith("slice(")
    assert metrics["round_trip_max_abs_diff"] <= 1e-4
    assert str(data_dir) in meta.provenance.data
    # temperature scaling on the valid split: stored, reported, applied (the round trip above)
    assert meta.calibration is not None and "valid split, 24 patches" in meta.calibration.data
    nll_before, nll_after = meta.calibration.nll_before, meta.calibration.nll_after
    assert nll_before is not None and nll_after is not None and nll_after <= nll_before  # T minimises it
    calibration = metrics["calibration"]
    assert calibration["temperature"] == pytest.approx(meta.calibration.temperature)
    for split in ("valid", "test"):
        for side in ("before", "after"):
            figures = calibration["splits"][split][side]
            assert figures["ece_equal_width"]["ci_low"] <= figures["ece_equal_width"]["ci_high"]
            assert 0.0 <= figures["brier"]["value"] <= 1.0


def write_kaggle_folder(folder: Path, n: int) -> tuple[list[str], np.ndarray]:
    x, y = pcam_like_patches(n, seed=5)
    (folder / "train").mkdir(parents=True)
    ids = [f"{i:040x}" for i in range(n)]
    for patch_id, patch in zip(ids, x):
        tifffile.imwrite(folder / "train" / f"{patch_id}.tif", patch, photometric="rgb")
    rows = ["id,label"] + [f"{i},{v}" for i, v in zip(ids, y)]
    (folder / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return ids, x


def test_kaggle_folder_is_split_80_20_by_seed_and_trains(tmp_path: Path) -> None:
    ids, x = write_kaggle_folder(tmp_path / "kaggle", 40)
    data = read_kaggle_folder(tmp_path / "kaggle", valid_fraction=0.2, seed=3)
    train_ids = {ids[i] for i in data.train.indices}  # type: ignore[attr-defined]
    valid_ids = {ids[i] for i in data.valid.indices}  # type: ignore[attr-defined]
    assert (len(train_ids), len(valid_ids)) == (32, 8)
    assert not train_ids & valid_ids
    first = int(data.valid.indices[0])  # type: ignore[attr-defined]
    assert np.array_equal(data.valid.patch(0), x[first])
    again = read_kaggle_folder(tmp_path / "kaggle", valid_fraction=0.2, seed=3)
    assert np.array_equal(again.valid.indices, data.valid.indices)  # type: ignore[attr-defined]

    out = tmp_path / "k.safetensors"
    code = scan_main([
        "train", "--kaggle", str(tmp_path / "kaggle"), "--out", str(out), "--arch", TINY_CNN,
        "--no-pretrained", "--size", "96", "--frozen-epochs", "0", "--epochs", "1", "--batch-size", "16",
        "--lr", "1e-3", "--lr-find-iterations", "0", "--top-losses", "0", "--quiet",
    ])  # fmt: skip
    assert code == 0
    meta = read_metadata(out)
    assert "Kaggle" in meta.provenance.data
    assert meta.provenance.details["split_rule"].startswith("random 80%/20% split of patches, seed 0")
    assert not (tmp_path / "k_report" / "lr_find.png").exists()


def test_kaggle_labels_must_be_binary(tmp_path: Path) -> None:
    write_kaggle_folder(tmp_path, 4)
    (tmp_path / "train_labels.csv").write_text("id,label\n" + "".join(f"{i:040x},2\n" for i in range(4)))
    with pytest.raises(ConfigError, match="labels must be 0 .normal. or 1 .tumour."):
        read_kaggle_folder(tmp_path)


@pytest.mark.parametrize("input_px", [96, 224])
def test_exported_checkpoint_predicts_what_the_fastai_learner_predicts(tmp_path: Path, input_px: int) -> None:
    """Item 5: the scanner's predictor on the export equals the learner within 1e-4, also when the
    network input (224) differs from the patch (96) and the resize happens on both sides."""
    x, y = pcam_like_patches(48, seed=11)
    data = TrainingData(
        train=ArraySource(x[:32], y[:32]),
        valid=ArraySource(x[32:], y[32:]),
        geometry=PatchGeometry(),
        description="tiny synthetic PCam-like patches",
    )
    settings = tiny_settings(input_px=input_px, lr=1e-3, lr_find_iterations=0)
    result = run_recipe(data, settings, tmp_path, progress=False)
    learn = result.learn
    ours = learner_predictions(learn, data.valid, "valid")
    path = tmp_path / "m.safetensors"
    export_checkpoint(learn, path, checkpoint_metadata(settings, data, ours.checkpoint_metrics(), {}))
    predictor = Predictor.from_checkpoint(path, PredictorSettings(device="cpu"))
    theirs = predictor.predict(x[32:])
    assert 0.0 < ours.probs.std()  # a trained model, not a constant
    np.testing.assert_allclose(theirs, ours.probs, rtol=0, atol=1e-4)
    unseen = np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        predictor.predict(unseen),
        learner_predictions(learn, ArraySource(unseen, np.zeros(5, np.int64)), "unseen").probs,
        rtol=0,
        atol=1e-4,
    )


def test_recipe_freezes_the_body_for_the_first_stage(tmp_path: Path) -> None:
    x, y = pcam_like_patches(32, seed=2)
    data = TrainingData(ArraySource(x, y), ArraySource(x[:16], y[:16]), PatchGeometry(), "tiny")
    settings = tiny_settings(lr=1e-2, lr_find_iterations=0, unfrozen_epochs=0, frozen_epochs=1)
    set_seed(settings.seed)
    initial = {k: v.clone() for k, v in build_network_for(settings, None).state_dict().items()}
    result = run_recipe(data, settings, tmp_path, progress=False)
    trained = result.learn.model.state_dict()
    assert [s.name for s in result.stages] == ["frozen"]
    # same seed, same start; the frozen stage moved the head but no conv weight of the body
    # (BatchNorm layers still adapt, as fastai's train_bn does)
    assert torch.equal(trained["0.0.weight"], initial["0.0.weight"])
    assert torch.equal(trained["0.6.weight"], initial["0.6.weight"])
    assert not torch.equal(trained["1.8.weight"], initial["1.8.weight"])


def test_torchvision_imagenet_weights_go_into_the_body(tmp_path: Path) -> None:
    from torchvision.models import resnet50

    torch.manual_seed(1)
    trunk = resnet50(weights=None)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(trunk.state_dict(), path)
    start = find_starting_weights(RESNET50_FASTAI, path, pretrained=True)
    assert start is not None and start.kind == "body"
    network = build_network(RESNET50_FASTAI, 2)
    load_starting_weights(network, start, RESNET50_FASTAI)
    body = network.state_dict()
    assert torch.equal(body["0.0.weight"], trunk.conv1.weight)
    assert torch.equal(body["0.7.2.conv3.weight"], trunk.layer4[2].conv3.weight)
    assert torch.equal(body["0.1.running_var"], trunk.bn1.running_var)


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3)}, path)
    network = build_network(RESNET50_FASTAI, 2)
    with pytest.raises(CheckpointError, match="does not fit the resnet50-fastai-head body"):
        load_starting_weights(network, StartingWeights(path, "body", "test"), RESNET50_FASTAI)


def test_missing_imagenet_weights_say_how_to_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with pytest.raises(ConfigError, match="--no-pretrained"):
        find_starting_weights(RESNET50_FASTAI, None, pretrained=True)
    cached = tmp_path / "empty-hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    start = find_starting_weights(RESNET50_FASTAI, None, pretrained=True)
    assert start is not None and start.path == cached


def test_random_split_is_disjoint_complete_and_seeded() -> None:
    train, valid = random_split(103, 0.2, seed=7)
    assert len(valid) == 21 and len(train) == 82
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(103))
    assert np.array_equal(random_split(103, 0.2, seed=7)[1], valid)
    assert not np.array_equal(random_split(103, 0.2, seed=8)[1], valid)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--pcam", "/nonexistent/pcam", "--out", "m.safetensors", "--arch", TINY_CNN, "--no-pretrained"],
            "PCam folder /nonexistent/pcam does not exist",
        ),
        (["--pcam", "/nonexistent/pcam"], "--out CKPT"),
        (["--pcam", "x", "--out", "m.safetensors", "--arch", TINY_CNN], "tiny-cnn has no ImageNet weights"),
        (["--pcam", "x", "--out", "m.safetensors", "--crop-min-area", "0.2", "--no-pretrained"], "crop min area 0.2"),
        (["--pcam", "x", "--mine-only"], "--mine-only needs --slides"),
        (
            [
                "--pcam",
                "x",
                "--out",
                "m.safetensors",
                "--no-pretrained",
                "--arch",
                TINY_CNN,
                "--label-rule",
                "centre-majority",
            ],
            "--label-rule centre-majority needs --slides",
        ),
    ],
)
def test_bad_training_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scan_main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcam-scan: error: ") and message in err
    assert err.count("\n") == 1


def test_building_the_cli_imports_neither_fastai_nor_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pcam_scan.cli; pcam_scan.cli.build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastai', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_architecture_names_spelled_in_settings_are_the_registry_names() -> None:
    from training.settings import DEFAULT_ARCHITECTURE, SMALL_ARCHITECTURE

    assert (DEFAULT_ARCHITECTURE, SMALL_ARCHITECTURE) == (RESNET50_FASTAI, TINY_CNN)
    with pytest.raises(ConfigError, match="architecture 'resnet18' is not one of"):
        TrainSettings(architecture="resnet18")
