"""The fastai recipe: lr_find, `fit_one_cycle` with the body frozen, unfreeze, `fit_one_cycle`
with discriminative learning rates `slice(lr/10, lr)`.

The network is the scanner's own (`pcam_scan.model.architectures.build_network`, which is what
`vision_learner(resnet50)` builds: torchvision body cut before the pool, fastai head), with the
head initialised as `vision_learner` does (kaiming normal) and the same layer groups for freezing
(ResNet: stem + layer1-2, layer3-4, head). What is trained is therefore exactly what is exported.
On CUDA: mixed precision (bf16 where the GPU has it, else fp16 with loss scaling), channels_last,
and a batch size found by trying the largest that fits.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pcam_scan.errors import ConfigError
from pcam_scan.model.architectures import build_network
from pcam_scan.model.names import RESNET50_FASTAI
from pcam_scan.model.predictor import resolve_device
from training.data import build_dataloaders
from training.fastai_api import (
    AMPMode,
    ChannelsLast,
    CrossEntropyLossFlat,
    DataLoaders,
    Learner,
    MixedPrecision,
    accuracy,
    apply_init,
    set_seed,
)
from training.pretrained import StartingWeights, find_starting_weights, load_starting_weights
from training.settings import TrainSettings
from training.sources import TrainingData

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 64
N_CLASSES = 2


@dataclass(frozen=True)
class LrFind:
    """The lr_find sweep (learning rates and smoothed losses) and its valley suggestion."""

    lrs: list[float]
    losses: list[float]
    suggestion: float | None


@dataclass(frozen=True)
class Stage:
    """One `fit_one_cycle`: per-batch smoothed train loss, per-epoch table, wall time."""

    name: str
    lr: str
    train_losses: list[float]
    epochs: list[dict[str, float]]
    seconds: float
    images: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


@dataclass
class RecipeResult:
    """The trained learner and what happened on the way."""

    learn: Learner
    lr: float
    lr_find: LrFind | None
    batch_size: int
    device: torch.device
    precision: str
    start: StartingWeights | None
    stages: list[Stage] = field(default_factory=list)


def resolve_precision(name: str, device: torch.device) -> str:
    """fp32 on the CPU; on CUDA 'auto' is bf16 where supported, else fp16."""
    if device.type != "cuda":
        if name in ("bf16", "fp16"):
            raise ConfigError(f"mixed precision {name} needs a CUDA device")
        return "fp32"
    if name == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return name


def layer_groups(architecture: str) -> Callable[[nn.Module], list[list[nn.Parameter]]]:
    """fastai's splitter: ResNet as `vision_learner` splits it, other bodies as one group."""

    def split(model: nn.Module) -> list[list[nn.Parameter]]:
        body, head = model[0], model[1]  # type: ignore[index]
        if architecture == RESNET50_FASTAI:
            return [list(body[:6].parameters()), list(body[6:].parameters()), list(head.parameters())]
        return [list(body.parameters()), list(head.parameters())]

    return split


def build_network_for(settings: TrainSettings, start: StartingWeights | None) -> nn.Sequential:
    """The scanner's network with a kaiming-initialised head and the starting weights loaded."""
    network = build_network(settings.architecture, N_CLASSES)
    # the trainable architectures are (body, head) Sequentials (TrainSettings checks the name)
    assert isinstance(network, nn.Sequential), settings.architecture
    apply_init(network[1], nn.init.kaiming_normal_)
    if start is not None:
        load_starting_weights(network, start, settings.architecture)
    return network


def largest_batch_size(network: nn.Module, input_px: int, device: torch.device, precision: str, ceiling: int) -> int:
    """The largest power-of-two batch (<= ceiling) whose forward + backward fits on the GPU."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    network = network.to(device).train()
    batch = 1 << int(math.log2(ceiling))
    while batch >= 2:
        try:
            x = torch.randn(batch, 3, input_px, input_px, device=device).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = network(x).float().logsumexp(1).mean()
            loss.backward()
            network.zero_grad(set_to_none=True)
            return batch
        except torch.cuda.OutOfMemoryError:
            network.zero_grad(set_to_none=True)
            batch //= 2
        finally:
            torch.cuda.empty_cache()
    raise ConfigError(f"not even a batch of 2 at {input_px} px fits on {device}")


def build_learner(
    data: TrainingData, settings: TrainSettings, workdir: Path
) -> tuple[Learner, torch.device, int, str, StartingWeights | None]:
    """DataLoaders, network and Learner on the chosen device, frozen when starting from weights."""
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    start = find_starting_weights(settings.architecture, settings.weights_path, settings.pretrained)
    set_seed(settings.seed)
    network = build_network_for(settings, start)
    batch_size = settings.batch_size
    if batch_size is None:
        batch_size = (
            largest_batch_size(network, settings.input_px, device, precision, settings.max_batch_size)
            if device.type == "cuda"
            else CPU_BATCH_SIZE
        )
        batch_size = min(batch_size, max(2, len(data.train)))
    dls: DataLoaders = build_dataloaders(
        data,
        batch_size,
        settings.input_px,
        settings.crop_min_area,
        device,
        settings.num_workers,
        hed_sigma=settings.stain_augment_sigma,
    )
    learn = Learner(
        dls,
        network,
        loss_func=CrossEntropyLossFlat(),
        metrics=[accuracy],
        splitter=layer_groups(settings.architecture),
        wd=settings.weight_decay,
        path=workdir,
    )
    if device.type == "cuda":
        learn.add_cb(ChannelsLast())
        learn.add_cb(MixedPrecision(AMPMode.BF16 if precision == "bf16" else AMPMode.FP16))
    return learn, device, batch_size, precision, start


def run_lr_find(learn: Learner, iterations: int) -> LrFind:
    """fastai's lr_find in the frozen state; the suggestion is None when the sweep is too short
    or diverges at once (then the caller needs an explicit learning rate)."""
    try:
        with warnings.catch_warnings():
            # fastai 2.8 restores the pre-sweep weights through `numpy.core`, which numpy 2
            # deprecates; the warning is fastai's, the restore works
            warnings.filterwarnings("ignore", message=r"numpy\.core is deprecated", category=DeprecationWarning)
            suggested = learn.lr_find(num_it=iterations, show_plot=False)
        suggestion: float | None = float(suggested.valley)
    except (IndexError, ValueError, RuntimeError):
        suggestion = None
    if suggestion is not None and not (math.isfinite(suggestion) and suggestion > 0):
        suggestion = None
    recorder = learn.recorder
    return LrFind(
        lrs=[float(v) for v in recorder.lrs],
        losses=[float(v) for v in recorder.losses],
        suggestion=suggestion,
    )


def _fit_stage(learn: Learner, name: str, epochs: int, lr: float | slice) -> Stage:
    start = time.perf_counter()
    learn.fit_one_cycle(epochs, lr)
    seconds = time.perf_counter() - start
    recorder = learn.recorder
    names = [n for n in recorder.metric_names[1:] if n != "time"]
    table = [
        {"epoch": float(i), **{n: float(v) for n, v in zip(names, values)}} for i, values in enumerate(recorder.values)
    ]
    lr_text = f"slice({lr.start:.3g}, {lr.stop:.3g})" if isinstance(lr, slice) else f"{lr:.3g}"
    images = len(learn.dls.train) * learn.dls.train.bs * epochs
    return Stage(name, lr_text, [float(v) for v in recorder.losses], table, seconds, images)


def _no_log(*_args: object, **_kwargs: object) -> None:
    return None


def _epoch_row_logger(learn: Learner) -> Callable[[list[object]], None]:
    """One readable line per epoch ("epoch 2: train_loss 0.2020 valid_loss 0.0796 ...")."""

    def log_row(values: list[object]) -> None:
        names = list(learn.recorder.metric_names)
        if len(names) != len(values) or not values or isinstance(values[0], str):
            return
        parts = [
            f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
            for name, value in zip(names[1:], values[1:])
        ]
        log.info("epoch %s: %s", int(values[0]) + 1, "  ".join(parts))  # type: ignore[call-overload]

    return log_row


def run_recipe(
    data: TrainingData, settings: TrainSettings, workdir: Path, progress: bool = True, epoch_rows: bool = True
) -> RecipeResult:
    """lr_find (frozen), frozen stage, unfreeze, stage with `slice(lr/10, lr)`.

    `progress` draws fastai's bars (a terminal); without them `epoch_rows` still prints one
    line per epoch (losses, accuracy, time), which is what a log file wants.
    """
    learn, device, batch_size, precision, start = build_learner(data, settings, workdir)
    if not progress:
        if hasattr(learn, "progress"):
            learn.remove_cb(learn.progress)
        # the Recorder prints each epoch's row through learn.logger
        learn.logger = _epoch_row_logger(learn) if epoch_rows else _no_log
    if start is None and settings.frozen_epochs:
        log.warning("starting from random weights: the frozen stage trains the head over a random body")
    learn.freeze()
    found = run_lr_find(learn, settings.lr_find_iterations) if settings.lr_find_iterations else None
    lr = settings.lr if settings.lr is not None else (found.suggestion if found else None)
    if lr is None:
        raise ConfigError("lr_find suggested no learning rate (too few iterations or a diverging loss): pass --lr")
    result = RecipeResult(learn, lr, found, batch_size, device, precision, start)
    if settings.frozen_epochs:
        result.stages.append(_fit_stage(learn, "frozen", settings.frozen_epochs, lr))
    learn.unfreeze()
    if settings.unfrozen_epochs:
        result.stages.append(_fit_stage(learn, "unfrozen", settings.unfrozen_epochs, slice(lr / 10, lr)))
    learn.model.eval()
    return result
