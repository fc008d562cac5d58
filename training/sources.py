"""Labelled patch sources: what every data source (PCam HDF5, Kaggle folder, mined slides) gives
the training pipeline.

A source is random access and lazy: `patch(i)` reads one uint8 (P, P, 3) patch when the data
loader asks for it, so a 7 GB PCam file is never loaded whole. Labels are small and held in
memory. When the slide a patch came from is known (`slide_ids`), splits are made by slide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.wording import count_noun

CLASSES: tuple[str, str] = ("normal", "tumour")
TUMOUR_INDEX = 1


@runtime_checkable
class PatchSource(Protocol):
    """Random-access labelled patches: uint8 (P, P, 3), label 0 (normal) or 1 (tumour)."""

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) labels."""

    @property
    def patch_px(self) -> int: ...

    def __len__(self) -> int: ...

    def patch(self, index: int) -> np.ndarray:
        """uint8 (patch_px, patch_px, 3) patch number `index`."""

    def patches(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (len(indices), patch_px, patch_px, 3), in the order of `indices`."""


def check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Labels as int64 (N,) of 0 and 1; anything else is the user's data error."""
    flat = np.asarray(labels).reshape(len(labels), -1)
    if flat.shape[1] != 1:
        raise ConfigError(f"{where}: expected one label per patch, got shape {np.shape(labels)}")
    values = flat[:, 0]
    if values.size and not np.isin(values, (0, 1)).all():
        bad = sorted(set(np.unique(values).tolist()) - {0, 1})[:5]
        raise ConfigError(f"{where}: labels must be 0 (normal) or 1 (tumour), found {bad}")
    return values.astype(np.int64)


def check_patch_array(x: np.ndarray, where: str) -> None:
    """uint8 (N, P, P, 3) or a clear error naming `where`."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] != 3:
        raise ConfigError(f"{where}: patches must be uint8 (N, P, P, 3), got {x.dtype} {x.shape}")


class LabelledFiles:
    """Base of the file-backed sources: labels in memory, the patch size, the count."""

    def __init__(self, labels: np.ndarray, patch_px: int):
        self._labels = labels
        self._patch_px = patch_px

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def patch_px(self) -> int:
        return self._patch_px

    def __len__(self) -> int:
        return len(self._labels)


class ArraySource:
    """Patches held in memory (mined patches, tests), optionally with each patch's slide id."""

    def __init__(self, x: np.ndarray, labels: np.ndarray, slide_ids: Sequence[str] | None = None):
        check_patch_array(x, "patch array")
        self._x = x
        self._labels = check_labels(labels, "patch array")
        if len(self._labels) != len(x):
            raise ConfigError(f"{count_noun(len(x), 'patch')} but {count_noun(len(self._labels), 'label')}")
        if slide_ids is not None and len(slide_ids) != len(x):
            raise ConfigError(f"{count_noun(len(x), 'patch')} but {len(slide_ids)} slide ids")
        self.slide_ids = None if slide_ids is None else np.asarray(slide_ids, dtype=str)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def patch_px(self) -> int:
        return int(self._x.shape[1])

    def __len__(self) -> int:
        return len(self._x)

    def patch(self, index: int) -> np.ndarray:
        patch: np.ndarray = self._x[index]
        return patch

    def patches(self, indices: np.ndarray) -> np.ndarray:
        return self._x[np.asarray(indices, dtype=np.int64)]


class SubsetSource:
    """A view of some patches of another source, by index (a random split of one file)."""

    def __init__(self, parent: PatchSource, indices: np.ndarray):
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(parent)):
            raise ConfigError("subset indices fall outside the source")
        self.parent = parent
        self.indices = indices

    @property
    def labels(self) -> np.ndarray:
        labels: np.ndarray = self.parent.labels[self.indices]
        return labels

    @property
    def patch_px(self) -> int:
        return self.parent.patch_px

    def __len__(self) -> int:
        return len(self.indices)

    def patch(self, index: int) -> np.ndarray:
        return self.parent.patch(int(self.indices[index]))

    def patches(self, indices: np.ndarray) -> np.ndarray:
        return self.parent.patches(self.indices[np.asarray(indices, dtype=np.int64)])


@dataclass(frozen=True)
class TrainingData:
    """Train / valid (/ test) sources of one geometry, and what they are, for the provenance."""

    train: PatchSource
    valid: PatchSource
    geometry: PatchGeometry
    description: str
    test: PatchSource | None = None
    split_rule: str = "given"

    def __post_init__(self) -> None:
        for name, source in self.named_splits():
            if len(source) == 0:
                raise ConfigError(f"the {name} split holds no patch")
            if source.patch_px != self.geometry.patch_px:
                raise ConfigError(
                    f"the {name} split has {source.patch_px} px patches, expected {self.geometry.patch_px} px"
                )
        if len(np.unique(self.train.labels)) < 2:
            raise ConfigError("the train split must hold both normal and tumour patches")

    def named_splits(self) -> list[tuple[str, PatchSource]]:
        splits: list[tuple[str, PatchSource]] = [("train", self.train), ("valid", self.valid)]
        if self.test is not None:
            splits.append(("test", self.test))
        return splits

    def counts(self) -> dict[str, dict[str, int]]:
        """Patches per split and class, for the report."""
        return {
            name: {cls: int((source.labels == i).sum()) for i, cls in enumerate(CLASSES)}
            for name, source in self.named_splits()
        }
