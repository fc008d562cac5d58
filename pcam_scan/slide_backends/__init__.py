"""The one door to slide files: `open_slide_file` checks the path and opens it with a backend.

`pcam_scan.slide.Slide` (reads at a microns-per-pixel), the viewer's deep-zoom tiles and the
report's thumbnail all come through here; no other module imports a slide library. A new backend
(tiffslide, cuCIM) is one class satisfying `SlideBackend` (see `base`), passed to
`open_slide_file` (OpenSlide when none is).
"""

from __future__ import annotations

import os
from pathlib import Path

from pcam_scan.errors import SlideError
from pcam_scan.slide_backends.base import BackendMetadata, DeepZoomTiles, RecordedMpp, SlideBackend

__all__ = ["BackendMetadata", "DeepZoomTiles", "RecordedMpp", "SlideBackend", "open_slide_file"]


def _check_slide_path(path: Path) -> None:
    """Refuse, with one clear line, what is not a readable non-empty file."""
    if not path.exists():
        raise SlideError(f"{path}: no such file")
    if path.is_dir():
        raise SlideError(f"{path}: is a directory, not a slide file")
    if path.stat().st_size == 0:
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
