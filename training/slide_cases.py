"""Which slides to mine and what ground truth each has: folders in, `SlideCase`s out.

Layouts understood (names matched by slide file stem, case-insensitive):
- `pcam-scan synth` and Camelyon16-like: `DIR/*.tif`, `DIR/annotations/NAME.xml`,
  `DIR/masks/NAME_Mask.tif`, `DIR/reference.csv`;
- Camelyon16's release: `--slides training/tumor training/normal --annotations
  training/lesion_annotations` (and optionally `--masks` with `Tumor_001_Mask.tif`).
A slide without annotation or mask is a normal slide. With a reference.csv the ground truth is
cross-checked: a Tumor slide without annotations (it would be mined as normal, every lesion a
false negative) or a Normal slide with them is an error, not a guess.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.reference import read_reference
from pcam_scan.slide import SLIDE_SUFFIXES

ANNOTATION_SUFFIXES = (".xml", ".geojson", ".json")
MASK_SUFFIXES = ("_mask.tif", "_mask.tiff")


@dataclass(frozen=True)
class SlideCase:
    """One slide to mine: its id (file stem), path, and its ground truth when it has tumour."""

    slide_id: str
    slide_path: Path
    annotation_path: Path | None = None
    mask_path: Path | None = None

    @property
    def is_tumour(self) -> bool:
        return self.annotation_path is not None or self.mask_path is not None


def _by_stem(folder: Path | None, suffixes: Sequence[str]) -> dict[str, Path]:
    """Files of `folder` ending in one of `suffixes`, keyed by the lower-cased name before it."""
    if folder is None:
        return {}
    if not folder.is_dir():
        raise ConfigError(f"folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = path.name.casefold()
        for suffix in suffixes:
            if name.endswith(suffix) and path.is_file():
                found.setdefault(name[: -len(suffix)], path)
    return found


def find_slide_cases(
    slide_dirs: Sequence[str | os.PathLike[str]],
    annotation_dir: str | os.PathLike[str] | None = None,
    mask_dir: str | os.PathLike[str] | None = None,
    reference_csv: str | os.PathLike[str] | None = None,
) -> list[SlideCase]:
    """The slides in `slide_dirs` (not recursive) with their annotation or mask files.

    Defaults, for the synth / Camelyon16-like layout: annotations in the first slide folder's
    `annotations/`, masks in its `masks/`, reference in its `reference.csv`, where these exist.
    """
    if not slide_dirs:
        raise ConfigError("give at least one slide folder")
    dirs = [Path(d) for d in slide_dirs]
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"slide folder {folder} does not exist")
    first = dirs[0]
    ann_dir = Path(annotation_dir) if annotation_dir else _existing(first / "annotations")
    msk_dir = Path(mask_dir) if mask_dir else _existing(first / "masks")
    ref = Path(reference_csv) if reference_csv else _existing(first / "reference.csv")
    annotations = _by_stem(ann_dir, ANNOTATION_SUFFIXES)
    masks = _by_stem(msk_dir, MASK_SUFFIXES)
    cases: list[SlideCase] = []
    seen: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.casefold() not in SLIDE_SUFFIXES:
                continue
            slide_id = path.stem
            key = slide_id.casefold()
            if key in seen:
                raise ConfigError(f"two slides are named {slide_id}: {seen[key]} and {path}")
            seen[key] = path
            cases.append(SlideCase(slide_id, path, annotations.get(key), masks.get(key)))
    if not cases:
        raise ConfigError(f"no slide files ({', '.join(sorted(SLIDE_SUFFIXES))}) in {', '.join(map(str, dirs))}")
    if ref is not None:
        check_against_reference(cases, ref)
    return cases


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


def check_against_reference(cases: Sequence[SlideCase], reference_csv: Path) -> None:
    """Refuse ground truth that contradicts the reference's Tumor / Normal label."""
    reference = read_reference(reference_csv)
    labels = {e.name.casefold(): e.is_tumour for e in reference.entries}
    for case in cases:
        expected = labels.get(case.slide_id.casefold())
        if expected is None:
            continue
        if expected and not case.is_tumour:
            raise ConfigError(
                f"{case.slide_id} is Tumor in {reference_csv} but has no annotation or mask file: "
                "it would be mined as a normal slide"
            )
        if not expected and case.is_tumour:
            raise ConfigError(f"{case.slide_id} is Normal in {reference_csv} but has tumour annotations")
