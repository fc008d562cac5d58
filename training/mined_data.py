"""Mined patches as training data: find the slides, mine them, optionally save them in PCam's
HDF5 layout (so the next run reads them with `--pcam` instead of mining again)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pcam_scan.errors import ConfigError
from pcam_scan.wording import count_noun
from training.mining import MinedData, MiningSettings, mine_slides
from training.pcam_h5 import write_pcam_split
from training.slide_cases import SlideCase, find_slide_cases
from training.sources import TrainingData

PathArg = str | os.PathLike[str]


def mining_summary(mined: MinedData, settings: MiningSettings) -> dict[str, Any]:
    """What went where, for metrics.json: the slide split, per-slide counts, the settings."""
    return {
        "mining": {
            "slide_split": mined.slide_split.to_dict(),
            "per_slide": mined.per_slide,
            "settings": {k: str(v) for k, v in asdict(settings).items()},
        }
    }


def mined_description(cases: Sequence[SlideCase], slide_dirs: Sequence[PathArg]) -> str:
    """What mined patches came from, for a checkpoint's provenance or calibration."""
    n_tumour = sum(case.is_tumour for case in cases)
    return (
        f"patches mined from {count_noun(len(cases), 'slide')} ({n_tumour} with tumour) in "
        f"{', '.join(str(d) for d in slide_dirs)}"
    )


def mine_training_data(
    slide_dirs: Sequence[PathArg],
    settings: MiningSettings,
    annotation_dir: PathArg | None = None,
    mask_dir: PathArg | None = None,
    reference_csv: PathArg | None = None,
    save_dir: PathArg | None = None,
) -> tuple[TrainingData, dict[str, Any]]:
    """Mine the slides of `slide_dirs` and return train / valid (/ test) data split by slide."""
    cases = find_slide_cases(slide_dirs, annotation_dir, mask_dir, reference_csv)
    score = None
    if settings.hard_negatives is not None:
        from training.hard_negatives import predictor_scorer

        score = predictor_scorer(settings)
    mined = mine_slides(cases, settings, score)
    if "valid" not in mined.splits or not len(mined.splits["valid"].x):  # before anything is written
        raise ConfigError("mining gave no validation patches: give more slides or a larger --valid-fraction")
    if save_dir is not None:
        for split, patches in mined.splits.items():
            write_pcam_split(save_dir, split, patches.x, patches.meta)
    data = TrainingData(
        train=mined.splits["train"].source(),
        valid=mined.splits["valid"].source(),
        test=mined.splits["test"].source() if "test" in mined.splits else None,
        geometry=settings.geometry,
        description=mined_description(cases, slide_dirs),
        split_rule=f"by slide, stratified, seed {settings.seed}",
    )
    return data, mining_summary(mined, settings)
