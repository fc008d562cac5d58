"""The one door to slide files: `open_slide_file` checks the path and opens it with a backend.

`pcam_scan.slide.Slide` (reads at a microns-per-pixel), the viewer's deep-zoom tiles and the
report's thumbnail all come through here; no other module imports a slide library. A backend is
one class satisfying `SlideBackend` (see `base`): OpenSlide (`openslide_backend`) and tiffslide
(`tiffslide_backend`). The backend is chosen per slide (`SLIDE_BACKENDS`): `auto` gives tiffslide
the files whose tiles it decodes directly (Aperio SVS and generic tiled TIFF in JPEG, LZW,
Deflate or no compression; about 0.4x the CPU per read), bit-identical to OpenSlide on every
level with a whole-number downsample, and lets OpenSlide read the other levels of such a file
(recorded as `tiffslide+openslide`); OpenSlide the rest (JPEG 2000, where it is the faster of
the two, and every other format), and falls back to OpenSlide when tiffslide refuses a file; a
backend class may also be passed directly.
A slide on object storage (`s3://...`, any fsspec URL; `remote`) is read by tiffslide with range
requests, whatever `auto` would pick for a local copy. A DICOM whole-slide image is a folder of
one series' instances (or one instance file of it; `dicom_series`), read by OpenSlide's DICOM
reader (`dicom_backend`, recorded as `dicom`), or by wsidicom (`wsidicom_backend`) in the
transfer syntaxes OpenSlide does not decode (JPEG-LS, RLE, lossless JPEG).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pcam_scan.defaults import SLIDE_BACKEND, SLIDE_BACKENDS
from pcam_scan.errors import ConfigError, SlideError
from pcam_scan.regular_files import IrregularFileError, check_regular_file
from pcam_scan.slide_backends.base import BackendMetadata, DeepZoomTiles, RecordedMpp, SlideBackend
from pcam_scan.slide_backends.dicom_series import holds_dicom, is_dicom_file
from pcam_scan.slide_backends.remote import is_url

__all__ = [
    "DEFAULT_SLIDE_BACKEND",
    "SLIDE_BACKENDS",
    "BackendMetadata",
    "DeepZoomTiles",
    "RecordedMpp",
    "SlideBackend",
    "check_backend_name",
    "is_url",
    "open_slide_file",
]

AUTO, OPENSLIDE, TIFFSLIDE = SLIDE_BACKENDS
DEFAULT_SLIDE_BACKEND = SLIDE_BACKEND


def check_backend_name(name: str) -> str:
    """`name` if it is one of `SLIDE_BACKENDS`; ConfigError otherwise."""
    if name not in SLIDE_BACKENDS:
        raise ConfigError(f"slide backend {name!r} is not one of {', '.join(SLIDE_BACKENDS)}")
    return name


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


def _open_auto(path: Path) -> SlideBackend:
    """The fastest reader that gives OpenSlide's pixels on every level: tiffslide where it decodes
    the file's tiles directly, with OpenSlide for the levels whose downsample is fractional (a
    coarse level of 937 rows under 60,000, say, or Aperio's 4.0003); OpenSlide otherwise."""
    # deferred: `import pcam_scan` stays light; the libraries load with the first slide
    from pcam_scan.slide_backends.openslide_backend import OpenSlideBackend, detect_vendor
    from pcam_scan.slide_backends.tiffslide_backend import SERVED_VENDORS, TiffSlideBackend

    if detect_vendor(path) in SERVED_VENDORS:
        try:
            candidate = TiffSlideBackend.open(str(path))
        except SlideError:
            return OpenSlideBackend.open(path)
        if candidate.decodes_directly():
            candidate.delegate_fractional_levels(OPENSLIDE, lambda: OpenSlideBackend.open(path))
            return candidate
        candidate.close()
    return OpenSlideBackend.open(path)


def _open_remote(url: str, backend: str | type[SlideBackend]) -> SlideBackend:
    """A slide on object storage: tiffslide, the backend that reads through fsspec."""
    if backend == OPENSLIDE or not isinstance(backend, str):
        raise SlideError(f"{url}: OpenSlide reads local files only; use --slide-backend auto or tiffslide")
    check_backend_name(backend)
    from pcam_scan.slide_backends.tiffslide_backend import TiffSlideBackend

    return TiffSlideBackend.open(url)


def _open_dicom(path: Path, backend: str | type[SlideBackend]) -> SlideBackend:
    """A DICOM series (its folder, or one instance file): OpenSlide's DICOM reader
    (`dicom_backend`) where it decodes the frames, wsidicom (`wsidicom_backend`) where it does not."""
    if not isinstance(backend, str):
        return backend.open(path)
    if check_backend_name(backend) == TIFFSLIDE:
        raise SlideError(f"{path}: a DICOM slide; tiffslide does not read DICOM, use --slide-backend auto or openslide")
    from pcam_scan.slide_backends.dicom_backend import DicomSlideBackend
    from pcam_scan.slide_backends.dicom_series import open_series

    series = open_series(path)
    if backend == AUTO and not series.openslide_reads:
        from pcam_scan.slide_backends.wsidicom_backend import WsiDicomBackend

        return WsiDicomBackend.open_series(path, series)
    return DicomSlideBackend.open_series(path, series)


def open_slide_file(path: str | os.PathLike[str], backend: str | type[SlideBackend] = AUTO) -> SlideBackend:
    """The slide at `path` (a file, or a folder holding one DICOM series), open with `backend`
    (a name from `SLIDE_BACKENDS` or a backend class); SlideError with one clear line when it cannot be."""
    if is_url(path):
        return _open_remote(str(path), backend)
    checked = Path(path)
    if holds_dicom(checked) or is_dicom_file(checked):
        return _open_dicom(checked, backend)
    _check_slide_path(checked)
    if not isinstance(backend, str):
        return backend.open(checked)
    if check_backend_name(backend) == AUTO:
        return _open_auto(checked)
    if backend == TIFFSLIDE:
        from pcam_scan.slide_backends.tiffslide_backend import TiffSlideBackend

        return TiffSlideBackend.open(str(checked))
    from pcam_scan.slide_backends.openslide_backend import OpenSlideBackend

    return OpenSlideBackend.open(checked)
