"""The DICOM backend: a DICOM whole-slide series read through OpenSlide 4's DICOM reader.

`dicom_series` decides which files make the slide (one series, LABEL / OVERVIEW / THUMBNAIL
skipped) and hands OpenSlide the level-0 instance, from which OpenSlide finds the series' other
levels in the same folder; the pixels, pyramid and deep zoom are OpenSlide's (`OpenSlideBackend`).
The MPP is the level-0 instance's PixelSpacing, and the store records the backend as `dicom`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pcam_scan.slide_backends.base import RecordedMpp
from pcam_scan.slide_backends.dicom_series import DicomSeries, open_series
from pcam_scan.slide_backends.openslide_backend import OpenSlideBackend, open_osr

SOURCE = "dicom"
MPP_SOURCE = "dicom-pixel-spacing"


class DicomSlideBackend(OpenSlideBackend):
    """A DICOM series (a folder, or one of its instance files) opened with OpenSlide."""

    name = SOURCE
    series: DicomSeries

    @classmethod
    def open(cls, path: Path) -> DicomSlideBackend:
        return cls.open_series(path, open_series(path))

    @classmethod
    def open_series(cls, path: Path, series: DicomSeries) -> DicomSlideBackend:
        """The series `open_series` found at `path`, opened through its level-0 instance."""
        backend = cls(path, open_osr(series.entry))
        backend.series = series
        backend.metadata = replace(
            backend.metadata,
            backend=SOURCE,
            vendor=SOURCE,
            recorded_mpp=RecordedMpp(source=MPP_SOURCE, mpp_xy_um_px=series.mpp_xy_um_px),
            series=series.describe(),
        )
        return backend
