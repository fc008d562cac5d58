"""A training run's data and outputs, from resolved settings: the patches of the chosen source
(PCam HDF5 files, the Kaggle copy of PCam, or patches mined from slides), the default report
folder, and every output checked before any data is read or any epoch runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from training.mining import MiningSettings
from training.sources import TrainingData


@dataclass(frozen=True)
class SlideSource:
    """Patches mined from the slides of `slide_dirs` with their annotations, masks and reference
    (defaults: beside the slides), optionally saved in PCam HDF5 layout under `save_patches`."""

    slide_dirs: Sequence[str | Path]
    mining: MiningSettings
    annotations: str | Path | None = None
    masks: str | Path | None = None
    reference: str | Path | None = None
    save_patches: str | Path | None = None


def default_report_dir(checkpoint: Path) -> Path:
    """`model.safetensors` -> `model_report/` beside it."""
    return checkpoint.with_name(checkpoint.stem + "_report")


def check_outputs(checkpoint: Path | None, report: Path | None, save_patches: Path | None, overwrite: bool) -> None:
    """The run's outputs may be written (pcam_scan.outputs): the saved patches' files, the
    checkpoint and a report folder that is empty unless `overwrite`. None: not written."""
    from pcam_scan.outputs import check_output_dir, check_output_file, check_output_files

    if save_patches is not None:
        from training.pcam_h5 import SPLITS, split_paths

        check_output_dir(save_patches)
        check_output_files([p for split in SPLITS for p in split_paths(save_patches, split)], overwrite)
    if checkpoint is not None:
        check_output_file(checkpoint, overwrite)
    if report is not None:
        check_output_dir(report)
        if report.is_dir() and any(report.iterdir()) and not overwrite:
            raise ConfigError(f"report folder {report} is not empty; pass --overwrite to replace its files")


def load_training_data(
    geometry: PatchGeometry,
    *,
    pcam: str | Path | None = None,
    kaggle: str | Path | None = None,
    slides: SlideSource | None = None,
    valid_fraction: float,
    seed: int,
) -> tuple[TrainingData, dict[str, Any]]:
    """The training data of the one source given, and a summary for the report (mining only).
    Kaggle patches are split at random by `valid_fraction` and `seed`; PCam keeps its splits."""
    if sum(source is not None for source in (pcam, kaggle, slides)) != 1:
        raise ConfigError("give exactly one source of training data: PCam, Kaggle or slides")
    if pcam is not None:
        from training.pcam_h5 import read_pcam_folder

        return read_pcam_folder(pcam, geometry), {}
    if kaggle is not None:
        from training.kaggle import read_kaggle_folder

        return read_kaggle_folder(kaggle, valid_fraction, seed, geometry), {}
    from training.mined_data import mine_training_data

    assert slides is not None
    return mine_training_data(
        slides.slide_dirs, slides.mining, slides.annotations, slides.masks, slides.reference, slides.save_patches
    )
