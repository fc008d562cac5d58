"""Which files a scan takes: slide files as given, folders expanded to their slides."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.slide import SLIDE_SUFFIXES

MASK_SUFFIXES = ("_mask.tif", "_mask.tiff")  # Camelyon16 ground-truth masks beside the slides


def collect_slides(inputs: Iterable[str]) -> list[Path]:
    """Files as given (a missing or broken one becomes that slide's failure); folders expanded
    to their entries named like slides, sorted, leaving out Camelyon16 `*_Mask.tif` files and
    sub-folders. An entry that is not a readable file (a symbolic-link loop, a dangling link, a
    FIFO) is kept: it becomes that slide's failure, one line in the table and exit 1, instead of
    being skipped without a word."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in SLIDE_SUFFIXES and not p.name.lower().endswith(MASK_SUFFIXES) and not p.is_dir()
            )
            if not found:
                raise ConfigError(f"{path}: folder holds no slide files ({', '.join(sorted(SLIDE_SUFFIXES))})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths
