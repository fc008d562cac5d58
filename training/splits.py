"""Train / valid / test splits: by slide whenever slides are known, at random otherwise.

Patches of one slide are alike (same patient, stain, scanner), so a patch-level split of mined
patches would measure memory, not generalisation. `split_slides` assigns whole slides, tumour and
normal slides separately so that each side gets both kinds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pcam_scan.errors import ConfigError
from pcam_scan.wording import count_noun


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} {value} must lie in [0, 1)")


def random_split(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, valid) index arrays of `range(n)`, both sorted."""
    _check_fraction("valid fraction", valid_fraction)
    if valid_fraction == 0:
        raise ConfigError("valid fraction must be above 0: the recipe needs a validation split")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(n * valid_fraction))
    if n_valid >= n:
        raise ConfigError(f"{count_noun(n, 'patch')} are too few for a {valid_fraction:.0%} validation split")
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


@dataclass(frozen=True)
class SlideSplit:
    """Slide ids of each side; no slide is on two sides (checked)."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for side, ids in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            for slide_id in ids:
                if slide_id in seen:
                    raise ConfigError(f"slide {slide_id} is in both the {seen[slide_id]} and {side} splits")
                seen[slide_id] = side

    def side_of(self, slide_id: str) -> str:
        for side in ("train", "valid", "test"):
            if slide_id in getattr(self, side):
                return side
        raise ConfigError(f"slide {slide_id} is in no split")

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "valid": list(self.valid), "test": list(self.test)}


def _take(n: int, fraction: float) -> int:
    """How many of `n` slides a fraction gets: rounded, at least one when fraction > 0 and n > 1."""
    if fraction <= 0 or n == 0:
        return 0
    return min(n - 1, max(1, math.floor(n * fraction + 0.5))) if n > 1 else 0


def split_slides(
    slide_is_tumour: Mapping[str, bool],
    valid_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> SlideSplit:
    """Assign whole slides to train / valid / test, stratified by tumour and normal slides.

    Within each kind the slides are shuffled by `seed`; valid and test each get about their
    fraction, the rest trains. The train side must end up with at least one tumour slide.
    """
    _check_fraction("valid fraction", valid_fraction)
    _check_fraction("test fraction", test_fraction)
    if valid_fraction + test_fraction >= 1.0:
        raise ConfigError("valid and test fractions leave no slide to train on")
    rng = np.random.default_rng(seed)
    sides: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for kind in (True, False):
        ids = sorted(s for s, is_tumour in slide_is_tumour.items() if is_tumour == kind)
        ids = [ids[i] for i in rng.permutation(len(ids))]
        n_valid = _take(len(ids), valid_fraction)
        n_test = _take(len(ids) - n_valid, test_fraction / max(1e-9, 1 - valid_fraction))
        sides["valid"] += ids[:n_valid]
        sides["test"] += ids[n_valid : n_valid + n_test]
        sides["train"] += ids[n_valid + n_test :]
    if not any(slide_is_tumour[s] for s in sides["train"]):
        raise ConfigError("no tumour slide is left for training: give more tumour slides")
    if valid_fraction > 0 and not sides["valid"]:
        raise ConfigError(f"{count_noun(len(slide_is_tumour), 'slide')} are too few for a validation split by slide")
    return SlideSplit(
        train=tuple(sorted(sides["train"])),
        valid=tuple(sorted(sides["valid"])),
        test=tuple(sorted(sides["test"])),
    )
