"""A WSInfer model folder (`config.json` + `torchscript_model.pt`) as a pcam-scan checkpoint.

Only what pcam-scan can honour is imported: a config valid against wsinfer-zoo's schema, whose
transforms are the scanner's own preprocessing (Resize -> ToTensor -> Normalize), with two or
more classes of which one is tumour, and whose TorchScript is a ResNet18/34/50 in torchvision's
(or timm's) layout or a model pcam-scan exported. The TorchScript is loaded with `torch.jit.load`
(TorchScript code and tensors, no pickled Python objects), its weights are copied into the
architecture by name, and both are run on the same patches: if the probabilities differ by more
than `MAX_DELTA_P` the TorchScript computes something else and is refused. What is written is
an ordinary safetensors checkpoint; the TorchScript is not kept.

Geometry: the model is scanned at its own, the config's patch size and MPP. WSInfer labels the
whole patch, so the label square is the patch (label_px = patch_px) and the scan's default
stride is one patch: one heatmap cell per patch, non-overlapping, as WSInfer tiles a slide
(the stride cannot go below the label size, so this is its only grid). A model pcam-scan exported keeps its
own label square and rule (config key `pcam_scan`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from pcam_scan.bounded_json import JsonLimitError, parse_json
from pcam_scan.errors import CheckpointError
from pcam_scan.model.architectures import build_network
from pcam_scan.model.checkpoint import check_weights_fit, save_checkpoint
from pcam_scan.model.interop.torchscript import load_scripted
from pcam_scan.model.interop.wsinfer_config import CONFIG_NAME, TORCHSCRIPT_NAME, WsinferModel, read_config
from pcam_scan.model.metadata import ModelMetadata, Provenance
from pcam_scan.wording import first_line

MAX_DELTA_P = 1e-5
"""Largest |delta p| (fp32) between the TorchScript and the rebuilt network on the check patches."""
_PREFIX = "network."  # the wrapper of pcam-scan's own exports (wsinfer_export.LogitsForWsinfer)


def read_wsinfer_folder(folder: Path) -> tuple[WsinferModel, torch.jit.ScriptModule]:
    """The checked config and the loaded TorchScript of a WSInfer model folder."""
    if not folder.is_dir():
        raise CheckpointError(f"WSInfer model folder {folder} does not exist or is not a folder")
    config_path, script_path = folder / CONFIG_NAME, folder / TORCHSCRIPT_NAME
    for path in (config_path, script_path):
        if not path.is_file():
            raise CheckpointError(f"{folder} is not a WSInfer model folder: {path.name} is missing")
    try:
        doc = parse_json(config_path.read_bytes())
    except JsonLimitError as err:
        raise CheckpointError(f"{config_path}: {err}") from None
    model = read_config(doc, str(config_path))
    return model, load_scripted(script_path)


def wsinfer_metadata(model: WsinferModel, folder: Path, source_sha256: str) -> ModelMetadata:
    return ModelMetadata(
        architecture=model.architecture,
        classes=model.classes,
        tumour_index=model.tumour_index,
        input_px=model.input_px,
        patch_px=model.patch_px,
        label_px=model.label_px,
        mpp_um_px=model.mpp_um_px,
        normalisation=model.normalisation,
        label_rule=model.label_rule,
        provenance=Provenance.imported(
            f"unknown: WSInfer model folder {folder.name}, imported (see its model card)",
            "wsinfer",
            folder.name,
            source_sha256,
            label="as exported by pcam-scan"
            if model.exported_by_pcam_scan
            else f"the whole patch ({model.label_px} px), rule not stated by WSInfer: taken as {model.label_rule}",
        ),
    )


def import_wsinfer(folder: Path, out: Path, *, overwrite: bool) -> tuple[str, ModelMetadata, float]:
    """Convert a WSInfer model folder into a checkpoint at `out`; (model id, metadata, the
    measured max |delta p| between the TorchScript and the checkpoint's network)."""
    model, script = read_wsinfer_folder(folder)
    digest = hashlib.sha256((folder / TORCHSCRIPT_NAME).read_bytes() + (folder / CONFIG_NAME).read_bytes())
    metadata = wsinfer_metadata(model, folder, digest.hexdigest())
    state = {k: v.detach().float() if v.is_floating_point() else v for k, v in script.state_dict().items()}
    if state and all(k.startswith(_PREFIX) for k in state):
        state = {k[len(_PREFIX) :]: v for k, v in state.items()}
    check_weights_fit(metadata, state, f"{folder / TORCHSCRIPT_NAME}")
    network = build_network(metadata.architecture, metadata.n_classes)
    network.load_state_dict(state, strict=True)
    network.eval()
    delta = _max_delta_p(script, network, model)
    if not delta <= MAX_DELTA_P:
        raise CheckpointError(
            f"{folder / TORCHSCRIPT_NAME} is not plain {model.architecture} with its weights: probabilities differ "
            f"by up to {delta:.2g} (> {MAX_DELTA_P:g}); pcam-scan cannot run its forward"
        )
    return save_checkpoint(network, out, metadata, overwrite=overwrite), metadata, delta


def _max_delta_p(script: torch.jit.ScriptModule, network: torch.nn.Module, model: WsinferModel) -> float:
    """Both on the same 4 random patches as WSInfer feeds them (fed_px, normalised); the
    network after the scanner's own resize to its input size."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((4, 3, model.fed_px, model.fed_px), generator=generator)
    mean = torch.tensor(model.normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.normalisation.std).view(1, 3, 1, 1)
    x = (x - mean) / std
    with torch.inference_mode():
        try:
            theirs = script(x).float()
        except RuntimeError as err:
            raise CheckpointError(f"the TorchScript fails on {model.fed_px} px patches ({first_line(err)})") from None
        y = x
        if model.input_px != model.fed_px:
            y = F.interpolate(x, size=(model.input_px,) * 2, mode="bilinear", antialias=True, align_corners=False)
        ours = network(y).float()
    if theirs.shape != ours.shape:
        raise CheckpointError(f"the TorchScript returns shape {list(theirs.shape)}, expected {list(ours.shape)}")
    return float((theirs.softmax(dim=1) - ours.softmax(dim=1)).abs().max())
