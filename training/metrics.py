"""Patch-level metrics of one split: accuracy, ROC AUC, confusion matrix, mean loss.

Accuracy takes the arg-max class (fastai's `accuracy`); ROC AUC is over P(tumour) and is None
when the split holds only one class (it is undefined, not 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class SplitPredictions:
    """P(tumour), true labels and per-patch loss of every patch of a split, in source order."""

    name: str
    probs: np.ndarray
    targets: np.ndarray
    losses: np.ndarray
    logits: np.ndarray | None = None
    """(N, C) raw logits, before any temperature: what temperature scaling is fitted on."""

    @property
    def predicted(self) -> np.ndarray:
        return (self.probs > 0.5).astype(np.int64)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.targets).mean())

    @property
    def auc(self) -> float | None:
        if len(np.unique(self.targets)) < 2:
            return None
        return float(roc_auc_score(self.targets, self.probs))

    @property
    def confusion(self) -> np.ndarray:
        """2 x 2 counts, rows = actual (normal, tumour), columns = predicted."""
        matrix = np.zeros((2, 2), dtype=np.int64)
        np.add.at(matrix, (self.targets, self.predicted), 1)
        return matrix

    def summary(self) -> dict[str, object]:
        return {
            "n": int(len(self.targets)),
            "accuracy": self.accuracy,
            "auc": self.auc,
            "loss": float(self.losses.mean()) if len(self.losses) else None,
            "confusion_actual_by_predicted": self.confusion.tolist(),
        }

    def checkpoint_metrics(self) -> dict[str, float]:
        """`{split}_accuracy`, `{split}_auc` (when defined), `{split}_loss` for the metadata."""
        out = {f"{self.name}_accuracy": self.accuracy, f"{self.name}_loss": float(self.losses.mean())}
        if self.auc is not None:
            out[f"{self.name}_auc"] = self.auc
        return out
