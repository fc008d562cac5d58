"""Import TIAToolbox's PCam classifiers (`resnet18-pcam.pth`, `resnet34-pcam.pth`, `resnet50-pcam.pth`).

TIAToolbox (`tiatoolbox/models/architecture/vanilla.py`, `CNNModel`) builds
`feat_extract = nn.Sequential(*list(torchvision_resnet.children())[:-2])`, an
`AdaptiveAvgPool2d(1)` and `classifier = nn.Linear(features, 2)`, and ends `forward` with a
softmax; its `.pth` files are plain state dicts of that module. `feat_extract.i` is torchvision's
i-th child (0 conv1, 1 bn1, 2 relu, 3 maxpool, 4-7 layer1-4: only 0, 1 and 4-7 hold weights) and
`classifier` is torchvision's `fc`, so the weights load by name into torchvision's ResNet with a
2-class fc, and the scanner's own softmax gives TIAToolbox's probabilities.

What TIAToolbox feeds them (its `pretrained_model.yaml` entries `<backbone>-pcam`, and the PCam
preprocessing `transforms.ToTensor()`): 96 x 96 px patches at 1.0 um/px, RGB scaled to [0, 1]
with no mean/std (recorded as mean 0, std 1). The weights were trained on PatchCamelyon, so the
label is PCam's (any tumour in the centre 32 x 32 px) and class index 1 is tumour (PCam's order;
the yaml names no classes). The scan then runs at that geometry: 96 px patches at 1.0 um/px,
one heatmap cell per 32 px label square (32 um instead of 31.1 um for PCam's 0.972 um/px).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from pcam_scan.errors import CheckpointError
from pcam_scan.model.architectures import build_network
from pcam_scan.model.checkpoint import check_weights_fit, save_checkpoint
from pcam_scan.model.metadata import ModelMetadata, Normalisation, Provenance
from pcam_scan.model.names import TORCHVISION_RESNETS
from pcam_scan.wording import first_line

TIATOOLBOX_MPP_UM_PX = 1.0
"""`input_resolutions: [{"resolution": 1.0, "units": "mpp"}]` of every `*-pcam` entry."""
TIATOOLBOX_PATCH_PX = 96
"""`patch_input_shape: [96, 96]` of every `*-pcam` entry."""
TIATOOLBOX_CLASSES = ("normal", "tumour")
NO_NORMALISATION = Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

# CNNModel's state-dict prefixes -> torchvision ResNet's (feat_extract.2/3 are relu/maxpool)
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("feat_extract.0.", "conv1."),
    ("feat_extract.1.", "bn1."),
    ("feat_extract.4.", "layer1."),
    ("feat_extract.5.", "layer2."),
    ("feat_extract.6.", "layer3."),
    ("feat_extract.7.", "layer4."),
    ("classifier.", "fc."),
)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A `.pth` file's state dict, loaded with `weights_only=True` (nothing but tensors and
    containers is unpickled); anything else is one CheckpointError line."""
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"weights file {path} is a directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds more than tensors: torch.load(weights_only=True) refused it ({first_line(err)})"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not a PyTorch weights file ({type(err).__name__}: {err})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path} does not hold a plain state dict (names -> tensors)")
    return dict(state)


def tiatoolbox_to_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CNNModel's names -> torchvision ResNet's; a name outside CNNModel's layout is refused."""
    mapped: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        new = next((tv + name[len(tia) :] for tia, tv in _PREFIXES if name.startswith(tia)), None)
        if new is None:
            raise CheckpointError(
                f"weight {name!r} is not in TIAToolbox's CNNModel layout (feat_extract.0/1/4-7.*, classifier.*)"
            )
        mapped[new] = tensor
    return mapped


def tiatoolbox_metadata(backbone: str, source: Path, source_sha256: str) -> ModelMetadata:
    """The metadata of an imported `<backbone>-pcam` model: TIAToolbox's geometry and scaling."""
    return ModelMetadata(
        architecture=TORCHVISION_RESNETS[backbone],
        classes=TIATOOLBOX_CLASSES,
        tumour_index=1,
        input_px=TIATOOLBOX_PATCH_PX,
        patch_px=TIATOOLBOX_PATCH_PX,
        mpp_um_px=TIATOOLBOX_MPP_UM_PX,
        normalisation=NO_NORMALISATION,
        label_rule="pcam-any",
        provenance=Provenance.imported(
            f"PatchCamelyon (TIAToolbox's {backbone}-pcam weights, imported)",
            "tiatoolbox",
            source.name,
            source_sha256,
            source_layout=f"tiatoolbox vanilla.CNNModel(backbone={backbone}, num_classes=2)",
            input_scaling="RGB / 255 in [0, 1], no mean/std (TIAToolbox's pcam preproc: ToTensor)",
            output="softmax over 2 classes (in CNNModel.forward; the scanner applies it to the logits)",
            input_resolution=f"{TIATOOLBOX_PATCH_PX} x {TIATOOLBOX_PATCH_PX} px at {TIATOOLBOX_MPP_UM_PX} um/px "
            "(TIAToolbox ioconfig)",
            label="PatchCamelyon: any tumour in the centre 32 x 32 px; class 1 = tumour",
        ),
    )


def import_tiatoolbox(source: Path, backbone: str, out: Path, *, overwrite: bool) -> tuple[str, ModelMetadata]:
    """Convert a TIAToolbox `<backbone>-pcam.pth` into a checkpoint at `out`; (model id, metadata)."""
    if backbone not in TORCHVISION_RESNETS:
        raise CheckpointError(f"--arch {backbone!r} is not one of {', '.join(TORCHVISION_RESNETS)}")
    state = tiatoolbox_to_torchvision(read_state_dict(source))
    fc = state.get("fc.weight")
    if fc is not None and fc.ndim == 2 and fc.shape[0] != len(TIATOOLBOX_CLASSES):
        raise CheckpointError(f"{source.name} has {fc.shape[0]} classes; TIAToolbox's PCam models have 2")
    metadata = tiatoolbox_metadata(backbone, source, hashlib.sha256(source.read_bytes()).hexdigest())
    check_weights_fit(metadata, state, f"{source.name} (is it another --arch?)")
    network = build_network(metadata.architecture, metadata.n_classes)
    network.load_state_dict(state, strict=True)
    return save_checkpoint(network, out, metadata, overwrite=overwrite), metadata
