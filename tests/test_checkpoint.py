"""Checkpoints: round trips, the model id, every refusal, and `pcam-scan model-info`."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pcam_scan.cli import main
from pcam_scan.errors import CheckpointError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.architectures import RESNET50_FASTAI, TINY_CNN, build_network
from pcam_scan.model.checkpoint import METADATA_KEY, load_checkpoint, read_metadata, save_checkpoint
from pcam_scan.model.metadata import ModelMetadata, Provenance
from pcam_scan.model.random_model import random_network, write_random_checkpoint

PROVENANCE = Provenance(data="PCam train split", date="2024-05-01T12:00:00+00:00", metrics={"valid_auc": 0.95})


def _tiny_metadata(**fields: Any) -> ModelMetadata:
    return ModelMetadata(architecture=TINY_CNN, provenance=fields.pop("provenance", PROVENANCE), **fields)


def _outputs(net: torch.nn.Module, seed: int = 0, px: int = 96) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(4, 3, px, px)).astype(np.float32))
    with torch.no_grad():
        return net.eval()(x)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, str]:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    net = random_network(_tiny_metadata(), seed=1)
    model_id = save_checkpoint(net, path, _tiny_metadata())
    return path, net, model_id


def test_tiny_round_trip_gives_the_same_weights_outputs_and_metadata(tiny: tuple[Path, torch.nn.Module, str]) -> None:
    path, net, model_id = tiny
    loaded = load_checkpoint(path)
    assert loaded.model_id == model_id
    assert loaded.metadata == _tiny_metadata()
    assert not loaded.network.training
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], tensor), name
    torch.testing.assert_close(_outputs(loaded.network), _outputs(net), rtol=0, atol=0)


def test_resnet50_round_trip(tmp_path: Path) -> None:
    meta = ModelMetadata(architecture=RESNET50_FASTAI, provenance=PROVENANCE, input_px=224)
    net = random_network(meta, seed=2)
    model_id = save_checkpoint(net, tmp_path / "r50.safetensors", meta)
    loaded = load_checkpoint(tmp_path / "r50.safetensors")
    assert loaded.model_id == model_id
    assert loaded.n_parameters == sum(p.numel() for p in net.parameters())
    torch.testing.assert_close(_outputs(loaded.network, px=96), _outputs(net, px=96), rtol=0, atol=0)


def test_metadata_gives_the_patch_geometry(tiny: tuple[Path, torch.nn.Module, str]) -> None:
    meta = read_metadata(tiny[0])
    assert meta.geometry() == PatchGeometry(patch_px=96, label_px=32, mpp_um_px=0.972, stride_px=32)
    assert meta.tumour_class == "tumour"
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert pickle.loads(pickle.dumps(meta)) == meta  # Ray ships it to workers


def test_label_rule_is_recorded_and_older_checkpoints_mean_pcams_rule(tiny: tuple[Path, torch.nn.Module, str]) -> None:
    meta = read_metadata(tiny[0])
    assert meta.label_rule == "pcam-any" and meta.geometry().label_rule == "pcam-any"
    majority = ModelMetadata(architecture=TINY_CNN, provenance=PROVENANCE, label_rule="centre-majority")
    assert ModelMetadata.from_json(majority.to_json()).geometry().label_rule == "centre-majority"
    older = json.loads(meta.to_json())
    del older["label_rule"]
    assert ModelMetadata.from_dict(older).label_rule == "pcam-any"
    with pytest.raises(CheckpointError, match="label rule 'any-pixel'"):
        ModelMetadata.from_dict({**older, "label_rule": "any-pixel"})


def test_model_id_is_the_documented_sha256_of_the_weights_alone(tiny: tuple[Path, torch.nn.Module, str]) -> None:
    path, net, model_id = tiny
    digest = hashlib.sha256()
    state = net.state_dict()
    for name in sorted(state):
        array = state[name].numpy()
        tag = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[array.dtype]
        digest.update(f"{name}\0{tag}\0{','.join(map(str, array.shape))}\0".encode())
        digest.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    assert model_id == digest.hexdigest()


def test_model_id_survives_metadata_changes_and_follows_the_weights(
    tiny: tuple[Path, torch.nn.Module, str], tmp_path: Path
) -> None:
    path, net, model_id = tiny
    relabelled = _tiny_metadata(
        provenance=Provenance(data="other data", date="2025-01-02", details={"note": "retitled"}),
        mpp_um_px=0.5,
    )
    assert save_checkpoint(net, tmp_path / "same.safetensors", relabelled) == model_id
    assert (tmp_path / "same.safetensors").read_bytes() != path.read_bytes()
    assert load_checkpoint(tmp_path / "same.safetensors").model_id == model_id

    changed = random_network(_tiny_metadata(), seed=1)
    with torch.no_grad():
        changed.state_dict()["1.8.weight"][0, 0] += 1e-6
    assert save_checkpoint(changed, tmp_path / "changed.safetensors", _tiny_metadata()) != model_id
    assert (
        save_checkpoint(random_network(_tiny_metadata(), seed=1), tmp_path / "again.safetensors", _tiny_metadata())
        == model_id
    )


def test_save_leaves_only_the_checkpoint_and_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    net = build_network(TINY_CNN, 2)
    save_checkpoint(net, tmp_path / "a.safetensors", _tiny_metadata())
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
    with pytest.raises(CheckpointError, match="weights do not fit resnet50-fastai-head"):
        save_checkpoint(
            net, tmp_path / "b.safetensors", ModelMetadata(architecture=RESNET50_FASTAI, provenance=PROVENANCE)
        )
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(net, tmp_path / "no" / "c.safetensors", _tiny_metadata())


def test_write_random_checkpoint_honours_metadata_overrides(tmp_path: Path) -> None:
    model_id = write_random_checkpoint(tmp_path / "m.safetensors", classes=("a", "b", "c"), tumour_index=2, seed=4)
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.model_id == model_id
    assert loaded.metadata.tumour_class == "c"
    assert _outputs(loaded.network).shape == (4, 3)


# --- refusals ---------------------------------------------------------------------------------


def _write_raw(path: Path, tensors: dict[str, torch.Tensor], doc: dict[str, Any] | str | None) -> Path:
    metadata = None if doc is None else {METADATA_KEY: doc if isinstance(doc, str) else json.dumps(doc)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _tiny_tensors() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in build_network(TINY_CNN, 2).state_dict().items()}


def _refusal(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_refuses_missing_file_and_directory(tmp_path: Path) -> None:
    _refusal(tmp_path / "absent.safetensors", "does not exist")
    _refusal(tmp_path, "is a directory")


def test_refuses_truncated_empty_and_foreign_files(tiny: tuple[Path, torch.nn.Module, str], tmp_path: Path) -> None:
    data = tiny[0].read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    _refusal(tmp_path / "truncated.safetensors", "not a valid safetensors file")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    _refusal(tmp_path / "empty.safetensors", "not a valid safetensors file")
    (tmp_path / "text.safetensors").write_text("this is a text file, not a model\n" * 20)
    _refusal(tmp_path / "text.safetensors", "not a valid safetensors file")


def test_refuses_a_pickle_without_unpickling_it(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    torch.save({"state": build_network(TINY_CNN, 2).state_dict(), "x": Payload()}, tmp_path / "model.safetensors")
    _refusal(tmp_path / "model.safetensors", "not a valid safetensors file")
    assert not marker.exists()


def test_refuses_safetensors_without_or_with_bad_metadata(tmp_path: Path) -> None:
    _refusal(_write_raw(tmp_path / "none.safetensors", _tiny_tensors(), None), "not a pcam-scan checkpoint")
    _refusal(_write_raw(tmp_path / "json.safetensors", _tiny_tensors(), "{not json"), "not valid JSON")
    _refusal(_write_raw(tmp_path / "list.safetensors", _tiny_tensors(), "[1, 2]"), "must be dict")


def _doc(**changes: Any) -> dict[str, Any]:
    doc = _tiny_metadata().to_dict()
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


BAD_METADATA = {
    "newer format": (_doc(format_version=2), "format_version 2 is not supported"),
    "unknown architecture": (_doc(architecture="resnet18"), "unknown architecture 'resnet18'"),
    "missing field": (_doc(input_px=None), "lacks the field 'input_px'"),
    "unknown field": (_doc(epochs=3), "unknown metadata field"),
    "wrong type": (_doc(input_px="96"), "'input_px' must be int"),
    "bool as int": (_doc(tumour_index=True), "'tumour_index' must be int"),
    "tumour index out of range": (_doc(tumour_index=2), "tumour_index 2 is out of range for 2 classes"),
    "one class": (_doc(classes=["tumour"], tumour_index=0), "2 or more distinct"),
    "duplicate classes": (_doc(classes=["a", "a"]), "2 or more distinct"),
    "label larger than patch": (_doc(label_px=128), "label 128 px is larger than patch 96 px"),
    "label not centred": (_doc(label_px=31), "must be even"),
    "implausible mpp": (_doc(mpp_um_px=0.0), "not plausible"),
    "input too small": (_doc(input_px=8), "input_px 8 is outside"),
    "zero std": (_doc(normalisation={"mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}), "std"),
    "two channels": (_doc(normalisation={"mean": [0.5] * 2, "std": [0.2] * 3}), "needs 3 values"),
    "bad date": (_doc(provenance={"data": "x", "date": "yesterday", "metrics": {}, "details": {}}), "ISO 8601"),
    "no provenance data": (
        _doc(provenance={"data": " ", "date": "2024-01-01", "metrics": {}, "details": {}}),
        "trained on",
    ),
    "text metric": (
        _doc(provenance={"data": "x", "date": "2024-01-01", "metrics": {"auc": "high"}, "details": {}}),
        "must be float",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_refuses_invalid_or_inconsistent_metadata(case: str, tmp_path: Path) -> None:
    doc, match = BAD_METADATA[case]
    _refusal(_write_raw(tmp_path / "bad.safetensors", _tiny_tensors(), doc), match)


def test_refuses_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    resnet_doc = _doc(architecture=RESNET50_FASTAI)
    _refusal(
        _write_raw(tmp_path / "keys.safetensors", _tiny_tensors(), resnet_doc),
        "weights do not fit resnet50-fastai-head",
    )
    three_classes = _doc(classes=["a", "b", "c"])
    _refusal(
        _write_raw(tmp_path / "shape.safetensors", _tiny_tensors(), three_classes),
        r"weight 1\.8\.weight is F32 \[2, 64\]",
    )
    halved = {k: (v.half() if k == "1.8.weight" else v) for k, v in _tiny_tensors().items()}
    _refusal(_write_raw(tmp_path / "dtype.safetensors", halved, _doc()), "is F16")
    missing = {k: v for k, v in _tiny_tensors().items() if k != "0.0.weight"}
    _refusal(_write_raw(tmp_path / "missing.safetensors", missing, _doc()), r"1 missing \(0\.0\.weight\)")
    poisoned = _tiny_tensors()
    poisoned["0.1.running_var"][3] = float("nan")
    _refusal(_write_raw(tmp_path / "nan.safetensors", poisoned, _doc()), "NaN or infinite")


# --- pcam-scan model-info ---------------------------------------------------------------------


def test_model_info_prints_the_model_id_and_metadata(
    tiny: tuple[Path, torch.nn.Module, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, model_id = tiny
    assert main(["model-info", str(path)]) == 0
    table = capsys.readouterr().out
    assert model_id in table
    assert "tiny-cnn" in table and "valid_auc=0.95" in table and "0.972 um/px" in table

    assert main(["model-info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_id"] == model_id
    assert ModelMetadata.from_dict(info["metadata"]) == _tiny_metadata()
    assert info["n_parameters"] == load_checkpoint(path).n_parameters


def test_model_info_refuses_a_bad_checkpoint_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    assert main(["model-info", str(tmp_path / "junk.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcam-scan: error: checkpoint ") and err.count("\n") == 1
