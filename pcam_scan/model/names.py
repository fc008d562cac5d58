"""The model's names without torch: architecture names and the device syntax.

Command-line parsers and settings validate against these, so building a parser (or `--help`)
never imports torch; `pcam_scan.model.architectures` maps the same names to networks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

RESNET50_FASTAI = "resnet50-fastai-head"
TINY_CNN = "tiny-cnn"
NULL_MODEL = "null"
# torchvision's ResNets with a `num_classes` fc: the layout of TIAToolbox's CNNModel (its
# `feat_extract` is torchvision's children up to layer4) and of WSInfer zoo ResNets; imported, not trained here
TORCHVISION_RESNETS: Mapping[str, str] = MappingProxyType(
    {
        "resnet18": "torchvision-resnet18",
        "resnet34": "torchvision-resnet34",
        "resnet50": "torchvision-resnet50",
    }
)
ARCHITECTURE_NAMES: tuple[str, ...] = (RESNET50_FASTAI, TINY_CNN, NULL_MODEL, *TORCHVISION_RESNETS.values())
# `null` scores a patch by its mean intensity: a benchmark of the pipeline without the model's
# compute, nothing to train.
TRAINABLE_ARCHITECTURES: tuple[str, ...] = (RESNET50_FASTAI, TINY_CNN)

DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def is_device_name(name: str) -> bool:
    """True for the device names the predictor and the trainer accept ('auto', 'cpu', 'cuda[:N]')."""
    return DEVICE_RE.fullmatch(name) is not None
