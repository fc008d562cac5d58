"""Source (b): the Kaggle "Histopathologic Cancer Detection" copy of PCam.

Layout: `train_labels.csv` (`id,label`) beside a `train/` folder of `{id}.tif` 96 x 96 RGB
patches. Kaggle removed PCam's duplicates and its slide ids, so the only split is the original
recipe's: a seeded random 80/20 split of the patches. Each TIFF is read when the data loader asks.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from pcam_scan.defaults import VALID_FRACTION
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.wording import count_noun
from training.sources import LabelledFiles, SubsetSource, TrainingData, check_labels
from training.splits import random_split


class KaggleSource(LabelledFiles):
    """Every labelled patch of a Kaggle `train/` folder; a patch is decoded on demand."""

    def __init__(self, folder: Path, ids: list[str], labels: np.ndarray, patch_px: int):
        super().__init__(labels, patch_px)
        self.folder = folder
        self.ids = ids

    def patch(self, index: int) -> np.ndarray:
        import tifffile

        path = self.folder / f"{self.ids[index]}.tif"
        try:
            pixels = tifffile.imread(path)
        except (OSError, ValueError, tifffile.TiffFileError) as err:
            raise ConfigError(f"cannot read Kaggle patch {path}: {err}") from None
        if pixels.shape != (self._patch_px, self._patch_px, 3) or pixels.dtype != np.uint8:
            raise ConfigError(
                f"{path}: expected a uint8 {self._patch_px}x{self._patch_px} RGB patch, "
                f"got {pixels.dtype} {pixels.shape}"
            )
        return pixels

    def patches(self, indices: np.ndarray) -> np.ndarray:
        return (
            np.stack([self.patch(int(i)) for i in indices])
            if len(indices)
            else np.zeros((0, self._patch_px, self._patch_px, 3), np.uint8)
        )


def read_labels_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Ids and labels of `train_labels.csv` (header `id,label`)."""
    if not path.is_file():
        raise ConfigError(f"Kaggle labels file {path} does not exist")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "label"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: expected the header 'id,label', got {reader.fieldnames}")
        rows = list(reader)
    ids = [row["id"].strip() for row in rows]
    try:
        raw = np.asarray([int(row["label"]) for row in rows], dtype=np.int64)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: every label must be 0 or 1") from None
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: an id appears more than once")
    return ids, check_labels(raw, str(path))


def read_kaggle_folder(
    folder: str | os.PathLike[str],
    valid_fraction: float = VALID_FRACTION,
    seed: int = 0,
    geometry: PatchGeometry | None = None,
) -> TrainingData:
    """The Kaggle folder as train/valid sources, split at random by `seed` (no slide ids)."""
    root = Path(folder)
    images = root / "train"
    if not images.is_dir():
        raise ConfigError(f"Kaggle folder {root} has no train/ folder")
    ids, labels = read_labels_csv(root / "train_labels.csv")
    if not ids:
        raise ConfigError(f"{root / 'train_labels.csv'} lists no patch")
    missing = [i for i in ids if not (images / f"{i}.tif").is_file()]
    if missing:
        raise ConfigError(
            f"{count_noun(len(missing), 'patch')} of train_labels.csv are not in {images}, e.g. {missing[0]}.tif"
        )
    geometry = geometry or PatchGeometry()
    source = KaggleSource(images, ids, labels, geometry.patch_px)
    train_idx, valid_idx = random_split(len(ids), valid_fraction, seed)
    return TrainingData(
        train=SubsetSource(source, train_idx),
        valid=SubsetSource(source, valid_idx),
        geometry=geometry,
        description=f"Kaggle PCam folder {root}",
        split_rule=f"random {1 - valid_fraction:.0%}/{valid_fraction:.0%} split of patches, seed {seed}",
    )
