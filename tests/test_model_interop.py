"""Models from and for other tools: TIAToolbox PCam state dicts imported, WSInfer model folders
exported and imported. Every model is a real network with random weights (the published weights
cannot be downloaded here); each is compared, patch by patch, with a reference built from
torchvision the way the other tool builds and feeds it."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import models, transforms

from pcam_scan.cli import main
from pcam_scan.model.checkpoint import load_checkpoint, read_metadata
from pcam_scan.model.predictor import Predictor
from pcam_scan.model.random_model import write_random_checkpoint

BACKBONES = ("resnet18", "resnet34", "resnet50")
# WSInfer loads TorchScript with torch.jit, which torch >= 2.10 marks deprecated; the tests do as WSInfer does
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")


class TiatoolboxCNNModel(nn.Module):
    """TIAToolbox's `vanilla.CNNModel(backbone, num_classes=2)`, written from torchvision as its
    source builds it: feat_extract = the backbone's children but the last two, a global average
    pool, a linear classifier, and a softmax at the end of forward."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        resnet = getattr(models, backbone)(weights=None)
        self.feat_extract = nn.Sequential(*list(resnet.children())[:-2])
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(resnet.fc.in_features, 2)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        feat = self.pool(self.feat_extract(imgs))
        return torch.softmax(self.classifier(torch.flatten(feat, 1)), -1)


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random BatchNorm affines and running statistics (not the init's 1/0/0/1, so a wrong
    mapping shows), and the last linear layer scaled so that its logits lie within +-0.5 on
    patches (probabilities away from 0 and 1, as a trained network's are)."""
    generator = torch.Generator().manual_seed(seed)

    def near(centre: float, spread: float, like: torch.Tensor) -> torch.Tensor:
        return centre + spread * (torch.rand(like.shape, generator=generator) - 0.5)

    with torch.no_grad():
        for norm in [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]:
            norm.weight.copy_(near(1.0, 0.2, norm.weight))
            norm.bias.copy_(near(0.0, 0.1, norm.bias))
            norm.running_mean.copy_(near(0.0, 0.1, norm.running_mean))  # type: ignore[union-attr]
            norm.running_var.copy_(near(1.0, 0.2, norm.running_var))  # type: ignore[union-attr]
        last = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
        last.bias.zero_()
        outputs: list[torch.Tensor] = []
        hook = last.register_forward_hook(lambda _m, _args, out: outputs.append(out))
        module.eval()(torch.from_numpy(_patches(16, 96, seed=99)).permute(0, 3, 1, 2).float() / 255)
        hook.remove()
        last.weight.mul_(0.5 / float(outputs[0].abs().max()))
    return module


def _patches(n: int, px: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB patches that differ as tissue patches do: each its own colour, plus texture."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(40, 216, (n, 1, 1, 3))
    texture = rng.integers(-40, 41, (n, px, px, 3))
    return np.clip(colour + texture, 0, 255).astype(np.uint8)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- TIAToolbox ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tia_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, nn.Module]]:
    folder = tmp_path_factory.mktemp("tiatoolbox")
    made = {}
    for seed, backbone in enumerate(BACKBONES):
        torch.manual_seed(seed)  # torchvision's init draws from the global generator
        reference = _randomised(TiatoolboxCNNModel(backbone), seed)
        path = folder / f"{backbone}-pcam.pth"
        torch.save(reference.state_dict(), path)  # what TIAToolbox publishes: a plain state dict
        made[backbone] = (path, reference)
    return made


def _import_tiatoolbox(pth: Path, backbone: str, out: Path) -> Path:
    assert main(["import-model", "--from", "tiatoolbox", str(pth), "--arch", backbone, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_tiatoolbox_model_gives_its_own_probabilities_through_the_predictor(
    backbone: str, tia_models: dict[str, tuple[Path, nn.Module]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pth, reference = tia_models[backbone]
    out = tmp_path / f"{backbone}.safetensors"
    code, stdout, err = _cli(
        ["import-model", "--from", "tiatoolbox", str(pth), "--arch", backbone, "--out", str(out)], capsys
    )
    assert code == 0, err
    assert "96 px at 1.0 um/px" in stdout
    patches = _patches(4, 96)
    got = Predictor.from_checkpoint(out).predict(patches)
    # TIAToolbox's data path: ToTensor (uint8 HWC -> float CHW / 255), no mean/std, softmax in forward
    batch = torch.stack([transforms.ToTensor()(Image.fromarray(p)) for p in patches])
    with torch.no_grad():
        expected = reference(batch)[:, 1].numpy()
    delta = float(np.abs(got - expected).max())
    print(f"{backbone}: max |delta p| = {delta:.2e}")
    assert delta <= 1e-6
    assert expected.min() < 0.99 and expected.max() > 0.01  # not saturated: the comparison means something
    # the weights map exactly: on one and the same input the two networks agree to the bit (the
    # delta above is the predictor's x * (1/255) against ToTensor's x / 255, amplified)
    same_input = torch.from_numpy(patches).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(out).network(same_input).softmax(dim=1), reference(same_input))


def test_the_import_records_tiatoolbox_s_geometry_scaling_and_provenance(
    tia_models: dict[str, tuple[Path, nn.Module]], tmp_path: Path
) -> None:
    pth, _ = tia_models["resnet18"]
    meta = read_metadata(_import_tiatoolbox(pth, "resnet18", tmp_path / "r18.safetensors"))
    assert meta.architecture == "torchvision-resnet18"
    assert (meta.patch_px, meta.input_px, meta.label_px, meta.mpp_um_px) == (96, 96, 32, 1.0)
    assert meta.normalisation.mean == (0.0, 0.0, 0.0) and meta.normalisation.std == (1.0, 1.0, 1.0)
    assert meta.tumour_class == "tumour" and meta.tumour_index == 1 and meta.label_rule == "pcam-any"
    details = meta.provenance.details
    assert details["imported_from"] == "tiatoolbox" and details["source"] == pth.name
    assert "softmax over 2 classes" in details["output"] and "1.0 um/px" in details["input_resolution"]
    assert len(details["source_sha256"]) == 64


@pytest.mark.parametrize(
    ("make", "arch", "message"),
    [
        (lambda: TiatoolboxCNNModel("resnet18").state_dict(), "resnet50", "is it another --arch?"),
        (lambda: models.resnet18(weights=None).state_dict(), "resnet18", "not in TIAToolbox's CNNModel layout"),
        (lambda: {"w": torch.zeros(2), "saved": datetime.date(2024, 1, 1)}, "resnet18", "weights_only=True"),
        (lambda: [torch.zeros(2)], "resnet18", "does not hold a plain state dict"),
    ],
    ids=["other-arch", "torchvision-layout", "pickled-object", "a-list"],
)
def test_a_file_that_is_not_a_tiatoolbox_state_dict_is_one_line(
    make, arch: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    pth = tmp_path / "model.pth"
    torch.save(make(), pth)
    out = tmp_path / "m.safetensors"
    code, _, err = _cli(["import-model", "--from", "tiatoolbox", str(pth), "--arch", arch, "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


# -- WSInfer export ------------------------------------------------------------------------------


def _wsinfer_probabilities(folder: Path, patches: np.ndarray) -> np.ndarray:
    """What WSInfer computes for patches already at the model's spacing: the config's transforms
    on each PIL image (torchvision's Resize / ToTensor / Normalize with the config's arguments),
    the TorchScript, a softmax over its outputs (wsinfer 0.6.1 modellib/transforms.py and
    run_inference.py), and the tumour column."""
    config = json.loads((folder / "config.json").read_text())
    steps = [getattr(transforms, t["name"])(**t.get("arguments", {})) for t in config["transform"]]
    pipeline = transforms.Compose(steps)
    batch = torch.stack([pipeline(Image.fromarray(p)) for p in patches])
    script = torch.jit.load(str(folder / "torchscript_model.pt"))
    with torch.no_grad():
        logits = script(batch)
    tumour = config["class_names"].index("tumour")
    return torch.softmax(logits, dim=1)[:, tumour].numpy()


def _validate_with_wsinfer_zoo(config: dict) -> None:  # type: ignore[type-arg]
    """wsinfer-zoo's own checks: its JSON schema, then its ModelConfiguration."""
    import jsonschema
    from wsinfer_zoo.client import ModelConfiguration

    schema_path = Path(__import__("wsinfer_zoo").__file__).parent / "schemas" / "model-config.schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    ModelConfiguration.from_dict(config)


@pytest.mark.parametrize("input_px", [96, 128], ids=["native", "resized-input"])
def test_an_exported_model_gives_the_predictor_s_probabilities_in_wsinfer(
    input_px: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "m.safetensors"
    write_random_checkpoint(ckpt, input_px=input_px, seed=3)
    out = tmp_path / "wsinfer"
    code, _, err = _cli(["export-model", str(ckpt), "--format", "wsinfer", str(out)], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    _validate_with_wsinfer_zoo(config)
    assert (config["patch_size_pixels"], config["spacing_um_px"]) == (96, 0.972)
    assert config["class_names"] == ["normal", "tumour"] and config["num_classes"] == 2
    norm = next(t for t in config["transform"] if t["name"] == "Normalize")["arguments"]
    meta = read_metadata(ckpt)
    assert (tuple(norm["mean"]), tuple(norm["std"])) == (meta.normalisation.mean, meta.normalisation.std)
    patches = _patches(8, 96, seed=1)
    got = _wsinfer_probabilities(out, patches)
    expected = Predictor.from_checkpoint(ckpt).predict(patches)
    delta = float(np.abs(got - expected).max())
    print(f"tiny-cnn input {input_px}: max |delta p| = {delta:.2e}")
    assert delta <= 1e-5


def test_an_imported_tiatoolbox_model_exports_to_wsinfer_with_its_own_geometry(
    tia_models: dict[str, tuple[Path, nn.Module]], tmp_path: Path
) -> None:
    pth, reference = tia_models["resnet18"]
    ckpt = _import_tiatoolbox(pth, "resnet18", tmp_path / "r18.safetensors")
    out = tmp_path / "wsinfer"
    assert main(["export-model", str(ckpt), "--format", "wsinfer", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["architecture"], config["spacing_um_px"]) == ("resnet18", 1.0)
    patches = _patches(4, 96, seed=2)
    with torch.no_grad():
        batch = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255
        expected = reference(batch)[:, 1].numpy()
    assert float(np.abs(_wsinfer_probabilities(out, patches) - expected).max()) <= 1e-5


def test_export_model_never_overwrites_without_overwrite(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wsinfer"
    assert main(["export-model", str(tiny_checkpoint), "--format", "wsinfer", str(out)]) == 0
    (out / "config.json").write_text("edited by hand\n")
    code, _, err = _cli(["export-model", str(tiny_checkpoint), "--format", "wsinfer", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert (out / "config.json").read_text() == "edited by hand\n"
    assert main(["export-model", str(tiny_checkpoint), "--format", "wsinfer", str(out), "--overwrite"]) == 0
    _validate_with_wsinfer_zoo(json.loads((out / "config.json").read_text()))


# -- WSInfer import ------------------------------------------------------------------------------


def test_a_model_exported_to_wsinfer_imports_back_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "m.safetensors"
    write_random_checkpoint(ckpt, input_px=128, seed=4)
    assert main(["export-model", str(ckpt), "--format", "wsinfer", str(tmp_path / "ws")]) == 0
    back = tmp_path / "back.safetensors"
    code, stdout, err = _cli(["import-model", "--from", "wsinfer", str(tmp_path / "ws"), "--out", str(back)], capsys)
    assert code == 0, err
    original, imported = load_checkpoint(ckpt), load_checkpoint(back)
    assert imported.model_id == original.model_id
    fields = ("architecture", "classes", "tumour_index", "input_px", "patch_px", "label_px", "mpp_um_px")
    assert all(getattr(imported.metadata, f) == getattr(original.metadata, f) for f in fields)
    assert imported.metadata.label_rule == original.metadata.label_rule
    assert imported.metadata.normalisation == original.metadata.normalisation
    assert imported.metadata.provenance.details["imported_from"] == "wsinfer"


def _zoo_folder(folder: Path, network: nn.Module, config: dict) -> Path:  # type: ignore[type-arg]
    """A WSInfer zoo-style folder: TorchScript of `network` and `config`."""
    folder.mkdir()
    torch.jit.save(torch.jit.script(network.eval()), str(folder / "torchscript_model.pt"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


ZOO_CONFIG = {
    "spec_version": "1.0",
    "architecture": "resnet18",
    "num_classes": 2,
    "class_names": ["Other", "Tumor"],
    "patch_size_pixels": 112,
    "spacing_um_px": 0.5,
    "transform": [
        {"name": "Resize", "arguments": {"size": 112}},
        {"name": "ToTensor"},
        {"name": "Normalize", "arguments": {"mean": [0.7, 0.55, 0.65], "std": [0.12, 0.15, 0.11]}},
    ],
}


def test_a_zoo_resnet_is_scanned_at_its_own_geometry_one_cell_per_patch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(5)
    network = _randomised(models.resnet18(weights=None, num_classes=2), seed=5)
    folder = _zoo_folder(tmp_path / "zoo", network, ZOO_CONFIG)
    out = tmp_path / "zoo.safetensors"
    code, stdout, err = _cli(["import-model", "--from", "wsinfer", str(folder), "--out", str(out)], capsys)
    assert code == 0, err
    meta = read_metadata(out)
    assert (meta.patch_px, meta.label_px, meta.input_px, meta.mpp_um_px) == (112, 112, 112, 0.5)
    assert meta.geometry().stride_px == 112  # the scan's default stride: one cell per patch
    assert (meta.tumour_class, meta.architecture) == ("Tumor", "torchvision-resnet18")
    patches = _patches(4, 112, seed=6)
    config = dict(ZOO_CONFIG, class_names=["normal", "tumour"])
    (folder / "config.json").write_text(json.dumps(config))  # the helper reads the "tumour" column
    got = Predictor.from_checkpoint(out).predict(patches)
    assert float(np.abs(got - _wsinfer_probabilities(folder, patches)).max()) <= 1e-5


class ScaledLogits(nn.Module):
    """A TorchScript whose forward is not plain ResNet: its weights fit, its outputs do not."""

    def __init__(self) -> None:
        super().__init__()
        self.network = models.resnet18(weights=None, num_classes=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * self.network(x) + 1.0


@pytest.mark.parametrize(
    ("network", "change", "message"),
    [
        (None, {"transform": [{"name": "CenterCrop", "arguments": {"size": 96}}]}, "not a valid WSInfer model config"),
        (None, {"num_classes": 1, "class_names": ["Tumor"]}, "sigmoid"),
        (None, {"class_names": ["a", "b"]}, "no single tumour class"),
        (None, {"architecture": "vit_small_patch16_224"}, "architecture 'vit_small_patch16_224' cannot run here"),
        (None, {"transform": [{"name": "ToTensor"}, {"name": "Resize", "arguments": {"size": 96}}]}, "differ from"),
        (None, {"patch_size_pixels": 4096}, "exceeds the limit"),
        (ScaledLogits, {}, "cannot run its forward"),
        ("resnet34", {}, "weights do not fit torchvision-resnet18"),
    ],
    ids=["schema", "sigmoid", "no-tumour", "vit", "order", "huge-patch", "custom-forward", "other-weights"],
)
def test_a_wsinfer_model_pcam_scan_cannot_honour_is_refused_in_one_line(
    network,
    change: dict,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[type-arg]
) -> None:  # type: ignore[no-untyped-def]
    if network is None:
        module: nn.Module = models.resnet18(weights=None, num_classes=2)
    elif network == "resnet34":
        module = models.resnet34(weights=None, num_classes=2)
    else:
        module = network()
    folder = _zoo_folder(tmp_path / "zoo", module, {**ZOO_CONFIG, **change})
    out = tmp_path / "m.safetensors"
    code, _, err = _cli(["import-model", "--from", "wsinfer", str(folder), "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()
