"""The report folder: lr_find, loss curves, confusion matrix and top losses with Grad-CAM as PNG,
and every number in `metrics.json`.

Figures are drawn with matplotlib's object API (`Figure`, no pyplot): no global state, no GUI
backend, safe in a worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from pcam_scan.outputs import atomic_output, write_output_text
from training.data import eval_loader
from training.fastai_api import Learner
from training.gradcam import grad_cam
from training.metrics import SplitPredictions
from training.recipe import LrFind, Stage
from training.sources import CLASSES, ArraySource, PatchSource

LR_FIND_PNG = "lr_find.png"
LOSSES_PNG = "loss_curves.png"
CONFUSION_PNG = "confusion_matrix_{split}.png"
TOP_LOSSES_PNG = "top_losses_gradcam.png"
METRICS_JSON = "metrics.json"


def plot_lr_find(found: LrFind, path: Path) -> None:
    """Smoothed loss against learning rate (log scale), the suggestion marked."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(found.lrs, found.losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed train loss")
    if found.suggestion is not None:
        ax.axvline(found.suggestion, color="red", linestyle="--", label=f"valley {found.suggestion:.2g}")
        ax.legend()
    ax.set_title("lr_find (body frozen)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_losses(stages: list[Stage], path: Path) -> None:
    """Per-batch smoothed train loss and per-epoch valid loss over both stages."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    offset = 0
    for stage in stages:
        steps = np.arange(offset + 1, offset + len(stage.train_losses) + 1)
        ax.plot(steps, stage.train_losses, label=f"train ({stage.name})")
        per_epoch = len(stage.train_losses) / max(1, len(stage.epochs))
        ends = [offset + per_epoch * (i + 1) for i in range(len(stage.epochs))]
        ax.plot(ends, [e["valid_loss"] for e in stage.epochs], "o-", label=f"valid ({stage.name})")
        offset += len(stage.train_losses)
        ax.axvline(offset, color="grey", linewidth=0.5)
    ax.set_xlabel("batch")
    ax.set_ylabel("cross-entropy")
    ax.legend()
    ax.set_title("loss curves")
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(predictions: SplitPredictions, path: Path) -> None:
    """The 2 x 2 confusion matrix with counts, actual by predicted."""
    matrix = predictions.confusion
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], CLASSES)
    ax.set_yticks([0, 1], CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{predictions.name}: accuracy {predictions.accuracy:.4f}")
    fig.tight_layout()
    save_figure(fig, path)


def top_loss_indices(predictions: SplitPredictions, k: int) -> np.ndarray:
    """Indices of the `k` patches with the highest loss, highest first."""
    k = min(k, len(predictions.losses))
    return np.argsort(-predictions.losses, kind="stable")[:k]


def gradcam_maps(learn: Learner, patches: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, P, P) Grad-CAM maps of `classes` for uint8 patches, through the validation pipeline."""
    loader = eval_loader(learn.dls, ArraySource(patches, np.zeros(len(patches), np.int64)))
    maps, start = [], 0
    for inputs, _ in loader:
        chosen = torch.from_numpy(classes[start : start + len(inputs)])
        maps.append(grad_cam(learn.model, inputs.as_subclass(torch.Tensor), chosen, patches.shape[1]).numpy())
        start += len(inputs)
    return np.concatenate(maps) if maps else np.zeros((0, *patches.shape[1:3]), np.float32)


def plot_top_losses(
    learn: Learner, source: PatchSource, predictions: SplitPredictions, k: int, label_px: int, path: Path
) -> list[int]:
    """The `k` worst patches, each with the Grad-CAM of the class the model predicted; returns
    their indices in the source."""
    indices = top_loss_indices(predictions, k)
    if not len(indices):
        return []
    patches = source.patches(indices)
    maps = gradcam_maps(learn, patches, predictions.predicted[indices])
    cols = min(4, len(indices))
    rows = math.ceil(len(indices) / cols)
    fig = Figure(figsize=(3 * cols, 3.3 * rows))
    for n, (index, patch, cam) in enumerate(zip(indices, patches, maps)):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.imshow(patch)
        ax.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.add_patch(_label_box(patch.shape[0], label_px))
        actual = CLASSES[predictions.targets[index]]
        predicted = CLASSES[predictions.predicted[index]]
        ax.set_title(
            f"#{index} {actual}->{predicted}\nP(tumour) {predictions.probs[index]:.2f} loss {predictions.losses[index]:.2f}",
            fontsize=8,
        )
        ax.axis("off")
    fig.suptitle(f"{predictions.name}: top losses, Grad-CAM of the predicted class (box = label region)")
    fig.tight_layout()
    save_figure(fig, path)
    return [int(i) for i in indices]


def _label_box(patch_px: int, label_px: int) -> Any:
    from matplotlib.patches import Rectangle

    corner = (patch_px - label_px) / 2 - 0.5
    return Rectangle((corner, corner), label_px, label_px, fill=False, edgecolor="white", linewidth=1)


def write_metrics_json(path: Path, document: Mapping[str, Any]) -> None:
    """metrics.json, with NaN written as null."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    write_output_text(path, json.dumps(clean(document), indent=2, sort_keys=True) + "\n", overwrite=True)


def save_figure(fig: Figure, path: Path) -> None:
    """The figure as a PNG, written whole then renamed (pcam_scan.outputs)."""
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
