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


LR_FIND_SKIP_END = 5
"""Like fastai's own plot: the last sweep steps, where the loss explodes, are not drawn."""


def plot_lr_find(found: LrFind, used_lr: float, path: Path) -> None:
    """Smoothed loss against learning rate (log scale), fastai's suggestion marked ON the curve,
    and the learning rate training used (the suggestion, or the user's --lr)."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    keep = max(2, len(found.lrs) - LR_FIND_SKIP_END)
    lrs, losses = np.asarray(found.lrs[:keep]), np.asarray(found.losses[:keep])
    ax.plot(lrs, losses, color="#1f4e79", label="smoothed train loss")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("smoothed train loss")
    if found.suggestion is not None and len(lrs):
        at = float(np.interp(math.log(found.suggestion), np.log(lrs), losses))
        ax.plot(
            [found.suggestion],
            [at],
            "o",
            color="#c0392b",
            markersize=8,
            zorder=3,
            label=f"fastai's suggestion (valley): {found.suggestion:.2g}",
        )
    same = found.suggestion is not None and math.isclose(used_lr, found.suggestion, rel_tol=1e-6)
    ax.axvline(
        used_lr,
        color="#27ae60",
        linestyle="--",
        label=f"learning rate used: {used_lr:.2g}" + (" (the suggestion)" if same else ""),
    )
    ax.legend(fontsize=8)
    ax.set_title("lr_find, body frozen (last steps, where the loss explodes, not drawn)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


PHASE_COLOURS = {"frozen": "#eaf2fb", "unfrozen": "#fdf2e9"}
PHASE_TEXT = {"frozen": "frozen: head only", "unfrozen": "unfrozen: whole network"}


def plot_losses(stages: list[Stage], path: Path) -> None:
    """Per-batch smoothed train loss and per-epoch valid loss over both stages, each stage's
    span shaded and named (frozen body, then the whole network)."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    offset = 0
    for stage in stages:
        start = offset
        steps = np.arange(offset + 1, offset + len(stage.train_losses) + 1)
        ax.plot(steps, stage.train_losses, label=f"train loss, {stage.name} (smoothed, per batch)")
        per_epoch = len(stage.train_losses) / max(1, len(stage.epochs))
        ends = [offset + per_epoch * (i + 1) for i in range(len(stage.epochs))]
        ax.plot(ends, [e["valid_loss"] for e in stage.epochs], "o-", label=f"valid loss, {stage.name} (per epoch)")
        offset += len(stage.train_losses)
        ax.axvspan(start, offset, color=PHASE_COLOURS.get(stage.name, "#f2f2f2"), zorder=0)
        ax.text(
            (start + offset) / 2,
            1.01,
            f"{PHASE_TEXT.get(stage.name, stage.name)}, lr {stage.lr}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xlabel("batch")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=8)
    ax.set_title("loss curves", pad=16)
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
    fig = Figure(figsize=(3 * cols + 0.9, 3.3 * rows + 0.7))
    for n, (index, patch, cam) in enumerate(zip(indices, patches, maps)):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.imshow(patch)
        ax.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.add_patch(_label_box(patch.shape[0], label_px))
        actual = CLASSES[predictions.targets[index]]
        predicted = CLASSES[predictions.predicted[index]]
        ax.set_title(
            f"#{index} {actual}->{predicted}\nP(tumour) {predictions.probs[index]:.2f} loss "
            f"{predictions.losses[index]:.2f}",
            fontsize=8,
        )
        ax.axis("off")
    fig.suptitle(f"{predictions.name}: top losses, Grad-CAM of the predicted class (box = label region)")
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / (3 * cols + 0.9), 1 - 0.6 / (3.3 * rows + 0.7)))
    _gradcam_colour_bar(fig, 0.9 / (3 * cols + 0.9))
    save_figure(fig, path)
    return [int(i) for i in indices]


def _gradcam_colour_bar(fig: Figure, width: float) -> None:
    """The Grad-CAM scale on a strip of `width` (figure fraction) at the right."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes((1 - width * 0.75, 0.15, width * 0.2, 0.65))
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=matplotlib.colormaps["jet"]), cax=cax)
    bar.set_label("Grad-CAM (0 none, 1 strongest)")


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
