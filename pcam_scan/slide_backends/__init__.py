"""The one door to slide files: `open_slide_file` checks the path and opens it with a backend.

`pcam_scan.slide.Slide` (reads at a microns-per-pixel), the viewer's deep-zoom tiles and the
report's thumbnail all come through here; no other module imports a slide library. A new backend
(tiffslide, cuCIM) is one class satisfying `SlideBackend` (see `base`), passed to
`open_slide_file` (OpenSlide when none is).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pcam_scan.errors import SlideError
from pcam_scan.regular_files import IrregularFileError, check_regular_file
from pcam_scan.slide_backends.base import BackendMetadata, DeepZoomTiles, RecordedMpp, SlideBackend

__all__ = ["BackendMetadata", "DeepZoomTiles", "RecordedMpp", "SlideBackend", "open_slide_file"]


def _check_slide_path(path: Path) -> None:
    """Refuse, with one clear line, what is not a readable non-empty regular file: a FIFO would
    block the reader for good, a device never ends, a symbolic-link loop cannot be opened."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SlideError(f"{path}: no such file") from None
    except OSError as err:  # a symbolic-link loop, a path through a file
        raise SlideError(f"{path}: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SlideError(f"{path}: is a directory, not a slide file")
    try:
        check_regular_file(path)
    except IrregularFileError as err:
        raise SlideError(str(err)) from None
    if info.st_size == 0:
        raise SlideError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise SlideError(f"{path}: permission denied")


def open_slide_file(path: str | os.PathLike[str], backend: type[SlideBackend] | None = None) -> SlideBackend:
    """The slide file at `path`, open with `backend` (default: OpenSlide); SlideError with one
    clear line when it cannot be."""
    checked = Path(path)
    _check_slide_path(checked)
    if backend is None:
        # deferred: `import pcam_scan` stays light; the OpenSlide library loads with the first slide
        from pcam_scan.slide_backends.openslide_backend import OpenSlideBackend

        backend = OpenSlideBackend
    return backend.open(checked)
