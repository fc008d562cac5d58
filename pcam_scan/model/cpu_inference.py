"""The network as the CPU runs it fastest: batch norms folded into their convolutions, NHWC.

Measured on the 2-core AMD EPYC development machine (ResNet50 with the fastai head, 96 px,
one torch thread, `bench/model_ceiling.py`-style loop): NCHW eager at batch 256 did 19 patches/s;
channels_last 27 (oneDNN's convolutions want NHWC); batch 64 instead of 256 33 (a batch's
activations then stay in the caches); each BatchNorm2d folded into the convolution before it
(one pass over the activations fewer, `torch.fx`'s `fuse`) 40. The fold is exact arithmetic
rearranged (w' = w * gamma / sigma, b' = beta - mu * gamma / sigma), so the probabilities move in
their last float bits only; the same folded network runs in every CPU worker of a scan, in
process and on Ray, so their heatmaps stay bit-identical to each other.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from pcam_scan.model.checkpoint import LoadedModel

_PREPARED = "_pcam_scan_cpu_inference"


def cpu_inference_model(loaded: LoadedModel) -> LoadedModel:
    """`loaded` with its network folded and in channels_last, for CPU inference; `loaded` itself
    is left as it was (its state-dict names are the checkpoint's, the folded network's are not).

    Already-prepared models are returned as they are, so a scan prepares the weights once and
    its model threads share them."""
    if getattr(loaded.network, _PREPARED, False):
        return loaded
    folded = fold_batch_norms(loaded.network.eval())
    folded = folded.to(memory_format=torch.channels_last)
    setattr(folded, _PREPARED, True)
    return dataclasses.replace(loaded, network=folded)


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """A copy of the eval-mode `network` with each BatchNorm that directly follows a convolution
    or linear layer folded into that layer's weights and bias (no other layer changes)."""
    from torch.fx.experimental.optimization import fuse

    if network.training:
        raise ValueError("batch norms fold only in eval mode (running statistics)")
    return fuse(network, inplace=False)
