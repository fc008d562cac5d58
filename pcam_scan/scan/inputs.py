"""Which files a scan takes: slide files as given, folders expanded to their slides; an object
store URL (`s3://bucket/slides/`) names a file, or a prefix expanded like a folder. A folder
holding DICOM files is one slide (a DICOM series), and so is each such sub-folder of a folder of slides."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.slide import SLIDE_SUFFIXES
from pcam_scan.slide_backends.dicom_series import holds_dicom
from pcam_scan.slide_backends.remote import is_url, list_remote, remote_is_folder

MASK_SUFFIXES = ("_mask.tif", "_mask.tiff")  # Camelyon16 ground-truth masks beside the slides


def _is_slide_name(name: str) -> bool:
    return not name.lower().endswith(MASK_SUFFIXES)


def collect_slides(inputs: Iterable[str]) -> list[str | Path]:
    """Files as given (a missing or broken one becomes that slide's failure); folders and object
    store prefixes expanded to their entries named like slides, sorted, leaving out Camelyon16
    `*_Mask.tif` files and sub-folders other than DICOM series folders. A folder entry that is not a readable file (a
    symbolic-link loop, a dangling link, a FIFO) is kept: it becomes that slide's failure, one
    line in the table and exit 1, instead of being skipped without a word."""
    paths: list[str | Path] = []
    for item in inputs:
        if is_url(item):
            if Path(item).suffix.lower() in SLIDE_SUFFIXES or not remote_is_folder(item):
                paths.append(item)
                continue
            found_urls = [url for url in list_remote(item, SLIDE_SUFFIXES) if _is_slide_name(url)]
            if not found_urls:
                raise ConfigError(f"{item}: prefix holds no slide files ({', '.join(sorted(SLIDE_SUFFIXES))})")
            paths.extend(found_urls)
            continue
        path = Path(item)
        if path.is_dir() and holds_dicom(path):
            paths.append(path)  # a folder of one DICOM series is one slide
        elif path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if (p.suffix.lower() in SLIDE_SUFFIXES and _is_slide_name(p.name) and not p.is_dir()) or holds_dicom(p)
            )
            if not found:
                raise ConfigError(
                    f"{path}: folder holds no slide files ({', '.join(sorted(SLIDE_SUFFIXES))}) or DICOM series folders"
                )
            paths.extend(found)
        else:
            paths.append(path)
    return paths
