"""uint8 patches in, P(tumour) out: the whole on-device computation as one torch module.

Normalisation, the resize to the network's input size, the network, the calibration temperature
(when the checkpoint has one), the softmax and the optional D4 test-time augmentation live in one
`nn.Module`, so the CPU and GPU paths compute the same thing, `torch.compile` sees (and fuses) all
of it, and the model-only benchmark measures exactly what the predictor runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcam_scan.model.metadata import ModelMetadata


def d4_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 images of the dihedral group D4 (4 rotations, each also mirrored) of NCHW images."""
    views = []
    for k in range(4):
        rotated = torch.rot90(x, k, dims=(2, 3))
        views += [rotated, rotated.flip(3)]
    return views


class PatchScorer(nn.Module):
    """Maps uint8 NHWC patches (N, patch_px, patch_px, 3) to float32 P(tumour), shape (N,).

    With `tta` the probability is the mean over the 8 D4 views (PCam labels are rotation and
    mirror invariant); the network then sees 8 x N images per call. `channels_last` lays
    activations out as NHWC, which tensor cores want.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        network: nn.Module,
        metadata: ModelMetadata,
        *,
        tta: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.network = network
        self.input_px = metadata.input_px
        self.resize = metadata.input_px != metadata.patch_px
        self.tumour_index = metadata.tumour_index
        # temperature scaling (Guo et al. 2017): None leaves the logits untouched, bit for bit
        self.inverse_temperature = None if metadata.temperature is None else 1.0 / metadata.temperature
        self.tta = tta
        self.channels_last = channels_last
        mean = torch.tensor(metadata.normalisation.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(metadata.normalisation.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the 0..255 values.
        device = next(network.parameters()).device
        self.register_buffer("scale", (1.0 / (255.0 * std)).to(device), persistent=False)
        self.register_buffer("shift", (-mean / std).to(device), persistent=False)

    def forward(self, patches_nhwc: torch.Tensor) -> torch.Tensor:
        x = self._network_input(patches_nhwc)
        if not self.tta:
            return self._probability(x)
        # one network call on all 8 views: one graph to compile, and a larger batch for the GPU
        views = d4_views(x)
        return self._probability(torch.cat(views)).view(len(views), -1).mean(dim=0)

    def raw_logits(self, patches_nhwc: torch.Tensor) -> torch.Tensor:
        """float32 (N, C) logits before any temperature, no test-time augmentation: what a
        temperature is fitted on (`pcam_scan.model.calibrate`)."""
        x = self._network_input(patches_nhwc)
        return self.network(x.contiguous(memory_format=self.memory_format)).float()  # type: ignore[no-any-return]

    def _network_input(self, patches_nhwc: torch.Tensor) -> torch.Tensor:
        x = self._as_float(patches_nhwc)
        if self.resize:
            x = F.interpolate(
                x, size=(self.input_px, self.input_px), mode="bilinear", antialias=True, align_corners=False
            )
        x.mul_(self.scale).add_(self.shift)  # in place: the same values as x * scale + shift
        return x

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _as_float(self, patches_nhwc: torch.Tensor) -> torch.Tensor:
        """float32 NCHW in the network's memory format, in one pass over the uint8 patches: the
        conversion, the transpose and the layout copy done separately cost 4x as much on a CPU
        (measured: 87 vs 21 ms for 256 patches of 96 px, one thread), as much as the reads."""
        n, h, w, c = patches_nhwc.shape
        x = torch.empty((n, c, h, w), dtype=torch.float32, device=patches_nhwc.device, memory_format=self.memory_format)
        x.copy_(patches_nhwc.permute(0, 3, 1, 2))
        return x

    def _probability(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.network(x.contiguous(memory_format=self.memory_format)).float()
        if self.inverse_temperature is not None:
            logits = logits * self.inverse_temperature
        return logits.softmax(dim=1)[:, self.tumour_index]
