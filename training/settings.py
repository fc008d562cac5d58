"""The training recipe's settings: one frozen, self-checking dataclass, recorded with the model.

Defaults are the original PCam fastai recipe: ResNet50 from ImageNet weights, 224 px input, D4
flips, random crop, `fit_one_cycle` frozen then unfrozen with `slice(lr/10, lr)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.model.names import RESNET50_FASTAI, TINY_CNN, TRAINABLE_ARCHITECTURES, is_device_name
from pcam_scan.resources import check_worker_count
from pcam_scan.validation import check_seed

DEFAULT_ARCHITECTURE = RESNET50_FASTAI
SMALL_ARCHITECTURE = TINY_CNN
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# A random crop must keep the label region (the centre 32 of 96 px) inside the patch: the crop
# side is at least (96 + 32) / 2 px, so its area is at least 4/9 of the patch.
MIN_CROP_AREA = 4.0 / 9.0
MAX_HED_SIGMA = 0.5
"""Beyond this the jitter can flip a stain's sign: colours no lab makes (Tellez's strong is 0.2)."""


@dataclass(frozen=True)
class TrainSettings:
    """What the recipe does; `lr` None means the `lr_find` suggestion, `batch_size` None means
    as large as the GPU takes (64 on the CPU)."""

    architecture: str = DEFAULT_ARCHITECTURE
    input_px: int = 224
    pretrained: bool = True
    weights_path: Path | None = None
    frozen_epochs: int = 2
    unfrozen_epochs: int = 4
    lr: float | None = None
    weight_decay: float = 1e-2
    batch_size: int | None = None
    crop_min_area: float = 0.75
    lr_find_iterations: int = 100
    precision: str = "auto"
    device: str = "auto"
    num_workers: int | None = None
    seed: int = 0
    top_losses: int = 16
    max_batch_size: int = 1024
    stain_augment_sigma: float = 0.0
    """HED colour jitter strength s (`training.data.RandomHed`); 0 trains without it."""

    def __post_init__(self) -> None:
        if self.architecture not in TRAINABLE_ARCHITECTURES:
            raise ConfigError(
                f"architecture {self.architecture!r} is not one of {', '.join(sorted(TRAINABLE_ARCHITECTURES))}"
            )
        if not 16 <= self.input_px <= 1024:
            raise ConfigError(f"input size {self.input_px} px must lie in 16..1024")
        if self.frozen_epochs < 0 or self.unfrozen_epochs < 0 or self.frozen_epochs + self.unfrozen_epochs == 0:
            raise ConfigError("epochs must not be negative, and at least one stage must train")
        if self.lr is not None and not 0 < self.lr < 1:
            raise ConfigError(f"learning rate {self.lr} must lie in (0, 1)")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight decay {self.weight_decay} must lie in [0, 1)")
        if self.batch_size is not None and not 2 <= self.batch_size <= self.max_batch_size:
            raise ConfigError(f"batch size {self.batch_size} must lie in 2..{self.max_batch_size}")
        if not MIN_CROP_AREA <= self.crop_min_area <= 1:
            raise ConfigError(
                f"crop min area {self.crop_min_area} must lie in [{MIN_CROP_AREA:.3f}, 1] so that "
                "every crop keeps the label region"
            )
        if self.lr is None and self.lr_find_iterations < 5:
            raise ConfigError("lr_find needs at least 5 iterations to suggest a learning rate (or give --lr)")
        if self.lr_find_iterations < 0:
            raise ConfigError("lr_find iterations must not be negative")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not is_device_name(self.device):
            raise ConfigError(f"device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        check_worker_count("--workers", self.num_workers)
        check_seed("--seed", self.seed)
        if self.top_losses < 0:
            raise ConfigError("top losses must not be negative")
        if not (math.isfinite(self.stain_augment_sigma) and 0.0 <= self.stain_augment_sigma <= MAX_HED_SIGMA):
            raise ConfigError(f"--stain-augment {self.stain_augment_sigma} must lie in [0, {MAX_HED_SIGMA}]")
        if self.weights_path is not None and not self.pretrained:
            raise ConfigError("--weights and --no-pretrained contradict each other")
        if self.pretrained and self.architecture != DEFAULT_ARCHITECTURE and self.weights_path is None:
            raise ConfigError(f"{self.architecture} has no ImageNet weights: add --no-pretrained (or --weights CKPT)")

    def to_details(self) -> dict[str, str]:
        """The settings as provenance strings."""
        return {f"train.{k}": str(v) for k, v in asdict(self).items()}
