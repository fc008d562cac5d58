"""The patch classifiers the scanner runs, built without fastai.

`resnet50-fastai-head` is exactly the module that fastai's `vision_learner(dls, resnet50)` builds:
`nn.Sequential(body, head)`, where the body is torchvision's ResNet50 cut before its average pool
(fastai's `create_body` with `cut=-2`) and the head is fastai's `create_head(2048, n_out)`. Module
order, names and biases match, so `learn.model.state_dict()` loads here by name with strict=True
and a model trained in `training/` runs in the scanner without fastai installed.

`tiny-cnn` is a real, small network with the same interface (3 x H x W in, one logit per class
out, the same fastai head) for fast tests, demos and pipeline benchmarks; it is a registered
architecture of the checkpoint format like any other, not a test double.

`torchvision-resnet18|34|50` are torchvision's ResNets (no pretrained weights) with an fc of
`n_out` logits: the layout of TIAToolbox's PCam classifiers (`vanilla.CNNModel`: `feat_extract` =
torchvision's children up to layer4, global average pool, `classifier` = the fc; its forward ends
in a softmax, which the scanner applies itself) and of WSInfer zoo ResNets. They are imported
(`pcam-scan import-model`, `pcam_scan/model/interop/`), not trained here.

`null` costs no compute: it scores a patch by its mean (normalised) intensity, darker means more
tumour. It measures the pipeline around the model (reads, transfers, batching, writes) in
benchmarks; it is not a classifier and is never trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import nn

from pcam_scan.model.names import NULL_MODEL, RESNET50_FASTAI, TINY_CNN, TORCHVISION_RESNETS

FASTAI_HIDDEN_FEATURES = 512


class AdaptiveConcatPool2d(nn.Module):
    """Max and average pooling to 1x1, concatenated as [max, avg] (fastai's layer, same order)."""

    def __init__(self) -> None:
        super().__init__()
        self.ap = nn.AdaptiveAvgPool2d(1)
        self.mp = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


def fastai_head(body_features: int, n_out: int, hidden: int = FASTAI_HIDDEN_FEATURES) -> nn.Sequential:
    """fastai's `create_head(body_features, n_out)` with its defaults (ps=0.5, concat pool, first_bn).

    Layer indices are the state-dict names: 2 and 6 are BatchNorm1d, 4 and 8 the bias-free Linears.
    """
    pooled = 2 * body_features
    return nn.Sequential(
        AdaptiveConcatPool2d(),
        nn.Flatten(),
        nn.BatchNorm1d(pooled),
        nn.Dropout(0.25),
        nn.Linear(pooled, hidden, bias=False),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden),
        nn.Dropout(0.5),
        nn.Linear(hidden, n_out, bias=False),
    )


def resnet50_fastai_head(n_out: int) -> nn.Sequential:
    """torchvision ResNet50 (no pretrained weights) cut before avgpool/fc, plus fastai's head."""
    from torchvision.models import resnet50

    trunk = resnet50(weights=None)
    body = nn.Sequential(*list(trunk.children())[:-2])
    return nn.Sequential(body, fastai_head(trunk.fc.in_features, n_out))


def _conv_bn_relu(n_in: int, n_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(n_in, n_out, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    ]


def tiny_cnn(n_out: int) -> nn.Sequential:
    """Three stride-2 conv blocks (16, 32, 64 channels) plus the fastai head with 64 hidden units."""
    body = nn.Sequential(*_conv_bn_relu(3, 16), *_conv_bn_relu(16, 32), *_conv_bn_relu(32, 64))
    return nn.Sequential(body, fastai_head(64, n_out, hidden=64))


class MeanIntensity(nn.Module):
    """(N, C, H, W) -> (N, 1): the mean over channels and pixels, the null model's only feature."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1)


def null_model(n_out: int) -> nn.Sequential:
    """Mean intensity, then a fixed 1 -> n_out linear map: class i's logit is -i x the mean.

    The weights are set here, not drawn, so every null checkpoint scores alike whatever its seed:
    with 2 classes, P(class 1) = sigmoid(-mean), higher for darker patches.
    """
    linear = nn.Linear(1, n_out)
    with torch.no_grad():
        # from a list, not torch.arange: on the meta device (checkpoint checks) arange runs
        # through torch._refs, which imports torch._dynamo: 2-3 s of every process's start
        linear.weight.copy_(torch.tensor([[-float(i)] for i in range(n_out)], dtype=linear.weight.dtype))
        linear.bias.zero_()
    return nn.Sequential(MeanIntensity(), linear)


def torchvision_resnet(depth_name: str) -> Callable[[int], nn.Module]:
    """The builder of torchvision's `depth_name` ("resnet18", ...) with an fc of n_out logits:
    state-dict names conv1, bn1, layer1..layer4, fc, as torchvision spells them."""

    def build(n_out: int) -> nn.Module:
        from torchvision import models

        network: nn.Module = getattr(models, depth_name)(weights=None, num_classes=n_out)
        return network

    return build


ARCHITECTURES: Mapping[str, Callable[[int], nn.Module]] = MappingProxyType(
    {
        RESNET50_FASTAI: resnet50_fastai_head,
        TINY_CNN: tiny_cnn,
        NULL_MODEL: null_model,
        **{name: torchvision_resnet(depth) for depth, name in TORCHVISION_RESNETS.items()},
    }
)


def build_network(architecture: str, n_out: int) -> nn.Module:
    """A freshly initialised network of a registered architecture with `n_out` logits.

    Raises KeyError for an unknown name; the checkpoint reader checks names before calling this.
    """
    return ARCHITECTURES[architecture](n_out)
