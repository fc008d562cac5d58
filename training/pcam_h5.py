"""Source (a): PatchCamelyon's HDF5 layout, read lazily; and the same layout written for mined
patches, so a mining run is reused by pointing `--pcam` at its folder.

The official files (https://github.com/basveeling/pcam, gunzipped) are

    camelyonpatch_level_2_split_{train,valid,test}_x.h5   dataset "x": uint8 N x 96 x 96 x 3
    camelyonpatch_level_2_split_{train,valid,test}_y.h5   dataset "y": uint8 N x 1 x 1 x 1
    camelyonpatch_level_2_split_{train,valid,test}_meta.csv  (optional) coord_y, coord_x,
        tumor_patch, center_tumor_patch, wsi

`x` is never read whole: each patch is read when the data loader asks for it, through a file
handle opened in the process that reads (h5py handles do not survive a fork or a pickle).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.outputs import atomic_output
from pcam_scan.wording import count_noun
from training.sources import LabelledFiles, TrainingData, check_labels

PREFIX = "camelyonpatch_level_2_split"
SPLITS = ("train", "valid", "test")
META_COLUMNS = ("coord_y", "coord_x", "tumor_patch", "center_tumor_patch", "wsi")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ConfigError("reading PCam HDF5 files needs h5py: pip install 'pcam-scan[train]'") from None
    return h5py


def split_paths(folder: Path, split: str) -> tuple[Path, Path, Path]:
    """The x, y and meta files of one split in a PCam folder."""
    stem = f"{PREFIX}_{split}"
    return (folder / f"{stem}_x.h5", folder / f"{stem}_y.h5", folder / f"{stem}_meta.csv")


class PcamH5Source(LabelledFiles):
    """One split of the PCam HDF5 files: labels in memory, patches read on demand."""

    def __init__(self, x_path: Path, y_path: Path, meta_path: Path | None = None):
        h5py = _h5py()
        self.x_path = x_path
        try:
            with h5py.File(y_path, "r") as fy:
                labels = check_labels(_dataset(fy, "y", y_path)[()], str(y_path))
            with h5py.File(x_path, "r") as fx:
                x = _dataset(fx, "x", x_path)
                shape, dtype = tuple(x.shape), x.dtype
        except OSError as err:
            raise ConfigError(f"cannot read PCam HDF5 file: {err}") from None
        if dtype != np.uint8 or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ConfigError(f"{x_path}: dataset x must be uint8 N x P x P x 3, got {dtype} {shape}")
        if shape[0] != len(labels):
            raise ConfigError(f"{x_path} holds {shape[0]} patches but {y_path} {count_noun(len(labels), 'label')}")
        super().__init__(labels, int(shape[1]))
        self.slide_ids = read_meta_slide_ids(meta_path, len(labels)) if meta_path else None
        self._handle: Any = None
        self._pid: int | None = None

    def _x(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            self._handle = _h5py().File(self.x_path, "r")
            self._pid = os.getpid()
        return self._handle["x"]

    def patch(self, index: int) -> np.ndarray:
        return np.asarray(self._x()[int(index)])

    def patches(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        sorted_unique, inverse = np.unique(indices[order], return_inverse=True)
        block = (
            np.asarray(self._x()[sorted_unique])
            if len(sorted_unique)
            else np.zeros((0, self._patch_px, self._patch_px, 3), np.uint8)
        )
        out = np.empty((len(indices), self._patch_px, self._patch_px, 3), dtype=np.uint8)
        out[order] = block[inverse]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None  # a worker process opens its own
        state["_pid"] = None
        return state


def _dataset(handle: Any, name: str, path: Path) -> Any:
    if name not in handle:
        raise ConfigError(f"{path}: no dataset {name!r} (is this a PCam {name} file?)")
    return handle[name]


def read_meta_slide_ids(path: Path, n: int) -> np.ndarray | None:
    """The `wsi` column of a PCam meta CSV, or None when the file is absent."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "wsi" not in rows[0]:
        raise ConfigError(f"{path}: meta CSV has no 'wsi' column")
    if len(rows) != n:
        raise ConfigError(f"{path}: {count_noun(len(rows), 'row')} for {n} patches")
    return np.asarray([row["wsi"] for row in rows], dtype=str)


def read_pcam_folder(folder: str | os.PathLike[str], geometry: PatchGeometry | None = None) -> TrainingData:
    """Train, valid and (when present) test splits of a PCam HDF5 folder."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"PCam folder {root} does not exist")
    sources = {}
    for split in SPLITS:
        x_path, y_path, meta_path = split_paths(root, split)
        present = x_path.is_file(), y_path.is_file()
        if not any(present):
            if split == "test":
                continue
            hint = " (gunzip the .h5.gz downloads first)" if Path(f"{x_path}.gz").exists() else ""
            raise ConfigError(f"{root}: no {x_path.name}{hint}")
        if not all(present):
            missing = x_path if not present[0] else y_path
            raise ConfigError(f"{root}: {missing.name} is missing")
        sources[split] = PcamH5Source(x_path, y_path, meta_path)
    geometry = geometry or PatchGeometry(patch_px=sources["train"].patch_px)
    return TrainingData(
        train=sources["train"],
        valid=sources["valid"],
        test=sources.get("test"),
        geometry=geometry,
        description=f"PCam HDF5 folder {root}",
        split_rule="the folder's train/valid/test files",
    )


@dataclass(frozen=True)
class PatchMeta:
    """Where one written patch came from (the PCam meta CSV row)."""

    l0_x: int
    l0_y: int
    tumour_in_patch: bool
    label: int
    slide_id: str


def write_pcam_split(folder: str | os.PathLike[str], split: str, x: np.ndarray, meta: Sequence[PatchMeta]) -> None:
    """Write one split in PCam's layout: x and y HDF5 files plus the meta CSV.

    `coord_x`/`coord_y` are the level-0 top-left corner of the patch on its slide.
    """
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if len(meta) != len(x):
        raise ConfigError(f"{count_noun(len(x), 'patch')} but {len(meta)} meta rows")
    h5py = _h5py()
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    x_path, y_path, meta_path = split_paths(root, split)
    y = np.asarray([m.label for m in meta], dtype=np.uint8).reshape(-1, 1, 1, 1)
    with atomic_output(x_path, overwrite=True) as tmp, h5py.File(tmp, "w") as fx:
        fx.create_dataset("x", data=x, dtype=np.uint8)
    with atomic_output(y_path, overwrite=True) as tmp, h5py.File(tmp, "w") as fy:
        fy.create_dataset("y", data=y, dtype=np.uint8)
    with atomic_output(meta_path, overwrite=True) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", *META_COLUMNS])
        for i, m in enumerate(meta):
            writer.writerow([i, m.l0_y, m.l0_x, m.tumour_in_patch, bool(m.label), m.slide_id])
