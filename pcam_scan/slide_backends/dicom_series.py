"""DICOM whole-slide images: which files of a folder make one slide (the only module that imports pydicom).

A DICOM slide is not one file but a series: one instance per pyramid level (VOLUME), plus LABEL,
OVERVIEW and THUMBNAIL images of the glass, usually side by side in one folder. `find_series`
reads each file's header (never its pixels), groups the VL whole-slide instances by
SeriesInstanceUID and keeps the VOLUME ones, finest first; `DicomSeries.entry` is the file a
reader opens (OpenSlide 4 finds the other levels of that series in the same folder), and
`openslide_reads` tells whether OpenSlide decodes its frames (else wsidicom reads them). A folder
holding one series is one slide (`holds_dicom` tells, from the DICOM preamble alone, so slide
discovery stays cheap); a folder holding several is refused with one line naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pcam_scan.errors import SlideError
from pcam_scan.wording import count_noun

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
"""Every DICOM Part 10 file: a 128-byte preamble, then these four bytes."""

VL_WSI_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"
"""VL Whole Slide Microscopy Image Storage: the SOP class of a DICOM whole-slide image."""

SKIPPED_FLAVOURS = frozenset({"LABEL", "OVERVIEW", "THUMBNAIL"})
"""ImageType value 3 of the instances that are pictures of the glass, not pyramid levels."""

OPENSLIDE_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian (uncompressed)
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
    }
)
"""The transfer syntaxes OpenSlide 4.0.1's DICOM reader decodes (checked: JPEG-LS, RLE, lossless
JPEG and Implicit VR Little Endian are refused as 'Unsupported transfer syntax')."""

VOLUME = "VOLUME"
UM_PER_MM = 1000.0


def is_dicom_file(path: Path) -> bool:
    """Whether `path` is a regular file carrying the DICOM preamble (whatever its name)."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(len(DICOM_MAGIC)) == DICOM_MAGIC
    except OSError:
        return False


def holds_dicom(folder: Path) -> bool:
    """Whether `folder` holds DICOM files (a DICOM slide folder, or something to refuse as one)."""
    try:
        return folder.is_dir() and any(is_dicom_file(entry) for entry in sorted(folder.iterdir()))
    except OSError:
        return False


@dataclass(frozen=True)
class DicomInstance:
    """One VL whole-slide instance, as its header describes it."""

    path: Path
    series_uid: str
    flavour: str
    """ImageType value 3: VOLUME (a pyramid level), LABEL, OVERVIEW or THUMBNAIL."""
    l0_wh: tuple[int, int]
    pixel_spacing_um: tuple[float, float] | None
    """(x, y) microns per pixel from PixelSpacing (DICOM gives rows then columns, in mm)."""
    transfer_syntax: str


@dataclass(frozen=True)
class DicomSeries:
    """The VOLUME instances of one series (finest first) and how many glass pictures were skipped."""

    series_uid: str
    volumes: tuple[DicomInstance, ...]
    skipped: int

    @property
    def entry(self) -> Path:
        """The level-0 instance: the file a reader opens the series through."""
        return self.volumes[0].path

    @property
    def openslide_reads(self) -> bool:
        """Whether OpenSlide decodes every level's frames (`OPENSLIDE_TRANSFER_SYNTAXES`)."""
        return all(volume.transfer_syntax in OPENSLIDE_TRANSFER_SYNTAXES for volume in self.volumes)

    @property
    def mpp_xy_um_px(self) -> tuple[float | None, float | None]:
        spacing = self.volumes[0].pixel_spacing_um
        return (None, None) if spacing is None else spacing

    def describe(self) -> str:
        levels = count_noun(len(self.volumes), "level")
        return f"{self.series_uid} ({levels}, {self.skipped} label/overview/thumbnail skipped)"


def _pixel_spacing_um(dataset: object) -> tuple[float, float] | None:
    """PixelSpacing of the shared functional groups (or the top level), as (x, y) um/px."""
    shared = getattr(dataset, "SharedFunctionalGroupsSequence", None)
    holders = [dataset]
    if shared:
        measures = getattr(shared[0], "PixelMeasuresSequence", None)
        if measures:
            holders.insert(0, measures[0])
    for holder in holders:
        spacing = getattr(holder, "PixelSpacing", None)
        if spacing is not None and len(spacing) == 2:
            try:
                row_mm, col_mm = float(spacing[0]), float(spacing[1])
            except (TypeError, ValueError):
                return None
            return (col_mm * UM_PER_MM, row_mm * UM_PER_MM)
    return None


def read_instance(path: Path) -> DicomInstance | None:
    """The header of `path` if it is a VL whole-slide DICOM instance; None for any other file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = [
        "SOPClassUID",
        "SeriesInstanceUID",
        "ImageType",
        "TotalPixelMatrixColumns",
        "TotalPixelMatrixRows",
        "PixelSpacing",
        "SharedFunctionalGroupsSequence",
    ]
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    if str(getattr(dataset, "SOPClassUID", "")) != VL_WSI_SOP_CLASS_UID:
        return None
    image_type = [str(value).upper() for value in getattr(dataset, "ImageType", [])]
    width, height = getattr(dataset, "TotalPixelMatrixColumns", None), getattr(dataset, "TotalPixelMatrixRows", None)
    if width is None or height is None:
        return None
    return DicomInstance(
        path=path,
        series_uid=str(getattr(dataset, "SeriesInstanceUID", "")),
        flavour=image_type[2] if len(image_type) > 2 else VOLUME,
        l0_wh=(int(width), int(height)),
        pixel_spacing_um=_pixel_spacing_um(dataset),
        transfer_syntax=str(getattr(dataset.file_meta, "TransferSyntaxUID", "")),
    )


def series_in(folder: Path) -> list[DicomSeries]:
    """The whole-slide series whose instances lie in `folder`, each with at least one VOLUME."""
    instances = [
        instance
        for entry in sorted(folder.iterdir())
        if is_dicom_file(entry) and (instance := read_instance(entry)) is not None
    ]
    found = []
    for uid in sorted({instance.series_uid for instance in instances}):
        members = [instance for instance in instances if instance.series_uid == uid]
        volumes = [m for m in members if m.flavour not in SKIPPED_FLAVOURS]
        if volumes:
            volumes.sort(key=lambda m: (-m.l0_wh[0] * m.l0_wh[1], m.path.name))
            found.append(DicomSeries(uid, tuple(volumes), skipped=len(members) - len(volumes)))
    return found


def open_series(path: Path) -> DicomSeries:
    """The one series a folder holds, or the series of one `.dcm` file (among its folder's files);
    SlideError with one line when there is none, or a folder holds several."""
    folder = path if path.is_dir() else path.parent
    try:
        found = series_in(folder)
    except OSError as err:
        raise SlideError(f"{path}: cannot list DICOM files: {err.strerror or err}") from None
    if not path.is_dir():
        instance = read_instance(path)
        if instance is None:
            raise SlideError(f"{path}: not a DICOM whole-slide image instance")
        found = [series for series in found if series.series_uid == instance.series_uid]
        if not found:
            raise SlideError(f"{path}: a {instance.flavour} image; its series has no pyramid (VOLUME) instances")
        return found[0]
    if not found:
        raise SlideError(f"{path}: folder holds no DICOM whole-slide image series")
    if len(found) > 1:
        names = ", ".join(series.series_uid for series in found)
        raise SlideError(
            f"{path}: folder holds {count_noun(len(found), 'DICOM series', 'DICOM series')} ({names}); "
            "give one instance file of a series"
        )
    return found[0]


def series_files(folder: Path) -> list[Path]:
    """The DICOM files of a slide folder, sorted by name (what its fingerprint covers)."""
    return sorted(entry for entry in folder.iterdir() if is_dicom_file(entry))
