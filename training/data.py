"""fastai DataLoaders over patch sources: uint8 patches in, augmented normalised batches out.

Items stay uint8 until they reach the device; every transform runs on the batch there:
- train: D4 (each patch one of the 8 flips/rotations at random: PCam has no orientation), with
  `--stain-augment` Tellez's HED colour jitter (`RandomHed`), a random square crop of at least
  `crop_min_area` of the patch (the label region always stays inside) resized to the input
  size, ImageNet normalisation;
- valid and test: the whole patch resized to the input size exactly as the scanner's
  `PatchScorer` does (bilinear, antialiased), the same normalisation. So the learner's
  validation probabilities are the scanner's, which the export round trip checks.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from pcam_scan.errors import ConfigError
from pcam_scan.model.metadata import IMAGENET_MEAN, IMAGENET_STD
from pcam_scan.resources import die_with_parent
from pcam_scan.wording import count_noun
from training.fastai_api import (
    DataLoaders,
    IntToFloatTensor,
    Normalize,
    RandomResizedCropGPU,
    TensorCategory,
    TensorImage,
    TfmdDL,
    Transform,
)
from training.sources import PatchSource, TrainingData

TRAIN, VALID = 0, 1  # fastai's split_idx: a Transform with split_idx runs on that split only


class PatchDataset:
    """(TensorImage uint8 CHW, TensorCategory) items of a source; `split_idx` picks transforms."""

    def __init__(self, source: PatchSource, split_idx: int):
        self.source = source
        self.split_idx = split_idx
        self._labels = source.labels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[TensorImage, TensorCategory]:
        pixels = np.ascontiguousarray(self.source.patch(int(index)))
        image = TensorImage(torch.from_numpy(pixels).permute(2, 0, 1))
        return image, TensorCategory(int(self._labels[index]))


class RandomD4(Transform):  # type: ignore[misc]  # fasttransform is untyped: Transform is Any
    """Each image of the batch becomes one of the 8 elements of D4 at random (train only)."""

    split_idx, order = TRAIN, 15

    def encodes(self, x: TensorImage) -> TensorImage:
        plain = x.as_subclass(torch.Tensor)  # skip fastai's per-op type dispatch
        n = plain.shape[0]
        draw = torch.randint(0, 8, (n,), device=plain.device)
        pick = [((draw >> bit) & 1).bool().view(n, 1, 1, 1) for bit in range(3)]
        plain = torch.where(pick[0], plain.transpose(2, 3), plain)  # square patches
        plain = torch.where(pick[1], plain.flip(3), plain)
        return TensorImage(torch.where(pick[2], plain.flip(2), plain))


# Ruifrok & Johnston's stain matrix, as skimage.color.rgb2hed has it: rows are the OD of one unit
# of haematoxylin, eosin and DAB (R, G, B).
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
MIN_INTENSITY = 1e-6  # skimage's floor before the log


class RandomHed(Transform):  # type: ignore[misc]  # fasttransform is untyped: Transform is Any
    """Tellez et al.'s HED colour augmentation (train only): each image's pixels go to optical
    density, are unmixed into haematoxylin, eosin and DAB by the Ruifrok matrix, each stain's
    amount becomes alpha * c + beta with alpha ~ U(1 - s, 1 + s) and beta ~ U(-s, s) drawn per
    image and stain, and the result is mixed back to RGB and clipped to [0, 1].

    Amounts are in plain optical-density units: skimage >= 0.19 divides OD by -log(1e-6) = 13.8
    before the jitter, where a bias of 0.05 would be an OD shift of 0.7 (a slide turned grey).
    With alpha = 1 and beta = 0 the transform gives back its input (no clipping of the amounts).
    """

    split_idx, order = TRAIN, 20  # after IntToFloatTensor (pixels in [0, 1]), before Normalize

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def encodes(self, x: TensorImage) -> TensorImage:
        plain = x.as_subclass(torch.Tensor)
        return TensorImage(hed_jitter(plain, self.sigma))


def hed_jitter(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """`RandomHed` on a float NCHW batch in [0, 1] (any device)."""
    n = x.shape[0]
    to_hed = HED_FROM_RGB.to(x.device, x.dtype)
    to_rgb = RGB_FROM_HED.to(x.device, x.dtype)
    od = -torch.log(x.clamp_min(MIN_INTENSITY))
    hed = torch.einsum("nihw,ij->njhw", od, to_hed)
    draws = torch.rand((2, n, 3, 1, 1), device=x.device, dtype=x.dtype, generator=generator) * 2.0 - 1.0
    hed = hed * (1.0 + sigma * draws[0]) + sigma * draws[1]
    return torch.exp(-torch.einsum("njhw,ji->nihw", hed, to_rgb)).clamp_(0.0, 1.0)


class ResizeToInput(Transform):  # type: ignore[misc]  # fasttransform is untyped: Transform is Any
    """The whole patch to `size` px the way `pcam_scan.model.scoring.PatchScorer` resizes (valid only)."""

    split_idx, order = VALID, 30

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def encodes(self, x: TensorImage) -> TensorImage:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)


def batch_transforms(input_px: int, crop_min_area: float, on_cuda: bool, hed_sigma: float = 0.0) -> list[Transform]:
    """The batch pipeline shared by every split (each transform knows its split); `hed_sigma`
    above 0 adds the HED colour jitter to the training batches."""
    return [
        IntToFloatTensor(),
        RandomD4(),
        *([RandomHed(hed_sigma)] if hed_sigma > 0 else []),
        RandomResizedCropGPU(input_px, min_scale=crop_min_area, ratio=(1.0, 1.0), split_idx=TRAIN),
        ResizeToInput(input_px),
        Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD, cuda=on_cuda),
    ]


def default_workers(device: torch.device) -> int:
    """Loader processes: none on the CPU (the cores train), up to 8 to feed a GPU."""
    return 0 if device.type == "cpu" else min(8, os.cpu_count() or 1)


def build_dataloaders(
    data: TrainingData,
    batch_size: int,
    input_px: int,
    crop_min_area: float,
    device: torch.device,
    num_workers: int | None = None,
    hed_sigma: float = 0.0,
) -> DataLoaders:
    """Train (shuffled, last partial batch dropped) and valid loaders on `device`."""
    if len(data.train) < batch_size:
        raise ConfigError(
            f"the train split has {count_noun(len(data.train), 'patch')}, fewer than one batch of {batch_size}: "
            "lower --batch-size"
        )
    workers = default_workers(device) if num_workers is None else num_workers
    on_cuda = device.type == "cuda"

    def loader(source: PatchSource, split_idx: int) -> TfmdDL:
        return TfmdDL(
            PatchDataset(source, split_idx),
            bs=batch_size,
            shuffle=split_idx == TRAIN,
            drop_last=split_idx == TRAIN,
            num_workers=workers,
            pin_memory=on_cuda,
            persistent_workers=workers > 0,
            wif=die_with_parent,  # no orphan loaders when the run is killed (fastai's worker-init hook)
            after_batch=batch_transforms(input_px, crop_min_area, on_cuda, hed_sigma),
            device=device,
        )

    return DataLoaders(loader(data.train, TRAIN), loader(data.valid, VALID), device=device)


def eval_loader(dls: DataLoaders, source: PatchSource) -> TfmdDL:
    """A loader with the validation transforms over another source (test split, new patches)."""
    loader: TfmdDL = dls.valid.new(PatchDataset(source, VALID), shuffle=False, drop_last=False)
    return loader
