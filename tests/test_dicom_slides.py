"""DICOM whole-slide images: a folder of one series is one slide, read by OpenSlide's DICOM
reader (or wsidicom, for JPEG-LS); its heatmap equals the TIFF original's; the real highdicom
test image opens, shows its MPP and is refused by a scan as smaller than one patch."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from pcam_scan.cli import main
from pcam_scan.errors import SlideError
from pcam_scan.scan.inputs import collect_slides
from pcam_scan.slide import Slide
from pcam_scan.store import HeatmapStore, slide_fingerprint
from pcam_scan.synth import SlideSpec
from pcam_scan.synth.slide_writer import write_synthetic_slide
from tests.conftest import REAL_DATA

SM_IMAGE = REAL_DATA / "highdicom" / "sm_image.dcm"
SCAN_OPTIONS = ["--in-process", "--device", "cpu", "--deterministic", "--block-cells", "16"]


def _copy_as(source: Path, target: Path, **changes: object) -> None:
    """`source` saved as `target` with new SOP instance UID and the given attributes changed."""
    dataset = pydicom.dcmread(source)
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(target)


def _dicomize(tiff: Path, folder: Path, encoding: str) -> None:
    """Convert `tiff` with wsidicomizer, losslessly (`uncompressed`: Explicit VR Little Endian,
    which OpenSlide reads; `jpeg-ls`: lossless JPEG-LS, which only wsidicom reads): the DICOM
    frames hold the TIFF's decoded pixels, level for level; then add a LABEL and a THUMBNAIL
    instance of the same series, which a reader must skip."""
    with warnings.catch_warnings():  # wsidicom's web client imports a pydicom 3 deprecated function
        warnings.filterwarnings("ignore", "get_frame_offsets is deprecated", DeprecationWarning)
        from wsidicom.codec import JpegLsSettings, NumpySettings
        from wsidicomizer import WsiDicomizer

        settings = NumpySettings() if encoding == "uncompressed" else JpegLsSettings()
        WsiDicomizer.convert(str(tiff), str(folder), tile_size=256, encoding=settings, force_transcoding=True)
    smallest = min(folder.iterdir(), key=lambda p: pydicom.dcmread(p, stop_before_pixels=True).TotalPixelMatrixColumns)
    for flavour in ("LABEL", "THUMBNAIL"):
        _copy_as(smallest, folder / f"{flavour.lower()}.dcm", ImageType=["DERIVED", "PRIMARY", flavour, "NONE"])


def _heatmap(store: HeatmapStore, slide_id: str) -> list[np.ndarray]:
    levels = len(store.prob_level_shapes(slide_id))
    return [store.read_prob(slide_id, level) for level in range(levels)] + [store.read_tissue(slide_id)]


@pytest.mark.parametrize(("encoding", "backend"), [("uncompressed", "dicom"), ("jpeg-ls", "wsidicom")])
def test_a_dicom_series_folder_scans_to_the_heatmap_of_its_tiff_original(
    encoding: str, backend: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    spec = SlideSpec(width_px=2112, height_px=2112, mpp_um_px=0.486, jpeg_quality=60)
    tiff = write_synthetic_slide(slides / "case.tif", spec, seed=5, tumour=True).path
    _dicomize(tiff, slides / "case_dcm", encoding)

    assert collect_slides([str(slides)]) == [tiff, slides / "case_dcm"]  # the series folder is one slide
    with Slide(slides / "case_dcm") as dicom, Slide(tiff, backend="openslide") as original:
        assert dicom.info.backend == backend and dicom.info.series is not None
        assert "4 levels, 2 label/overview/thumbnail skipped" in dicom.info.series
        assert [(lv.width, lv.height) for lv in dicom.info.levels] == [
            (lv.width, lv.height) for lv in original.info.levels
        ]
        assert dicom.info.mpp_um_px == pytest.approx(0.486)

    store_path = tmp_path / "scan.zarr"
    assert main(["scan", str(slides), "--model", str(tiny_checkpoint), "--store", str(store_path), *SCAN_OPTIONS]) == 0
    store = HeatmapStore.open(str(store_path))
    by_tiff, by_dicom = _heatmap(store, "case"), _heatmap(store, "case_dcm")
    assert int(np.count_nonzero(by_tiff[-1])) > 0  # tissue found: the heatmap is not empty
    assert len(by_tiff) == len(by_dicom)
    for ours, theirs in zip(by_dicom, by_tiff):
        assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f")
    record = store.stored_slide("case_dcm").record
    assert record.backend == backend
    assert record.fingerprint.startswith("folder-ends-sha256:")


def test_the_real_dicom_image_opens_shows_its_mpp_and_a_scan_refuses_it_in_one_line(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "sm_image"
    folder.mkdir()
    shutil.copyfile(SM_IMAGE, folder / "sm_image.dcm")
    series_uid = str(pydicom.dcmread(SM_IMAGE, stop_before_pixels=True).SeriesInstanceUID)
    for target in (folder, folder / "sm_image.dcm"):  # the folder, or one instance file of it
        assert main(["info", str(target)]) == 0
        out = capsys.readouterr().out
        assert "0.4990 um/px (dicom-pixel-spacing)" in out  # PixelSpacing 0.000499 mm
        assert f"series        {series_uid} (1 level, 0 label/overview/thumbnail skipped)" in out
        assert "50 x 50 px" in out

    store = tmp_path / "sm.zarr"
    assert main(["scan", str(folder), "--model", str(tiny_checkpoint), "--store", str(store), *SCAN_OPTIONS]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    status = HeatmapStore.open(str(store)).slide_status("sm_image")
    assert "smaller than one 96 px patch" in status.message and "\n" not in status.message
    assert "smaller than one 96 px patch" in captured.out


def test_dicom_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_series = tmp_path / "two_series"
    two_series.mkdir()
    shutil.copyfile(SM_IMAGE, two_series / "a.dcm")
    _copy_as(SM_IMAGE, two_series / "b.dcm", SeriesInstanceUID=generate_uid())
    assert main(["info", str(two_series)]) == 2
    assert "holds 2 DICOM series" in capsys.readouterr().err
    assert main(["info", str(two_series / "b.dcm")]) == 0  # one instance file names its series
    capsys.readouterr()
    assert main(["info", str(two_series / "a.dcm"), "--slide-backend", "tiffslide"]) == 2
    assert "tiffslide does not read DICOM" in capsys.readouterr().err

    label_only = tmp_path / "label_only"
    label_only.mkdir()
    _copy_as(SM_IMAGE, label_only / "label.dcm", ImageType=["DERIVED", "PRIMARY", "LABEL", "NONE"])
    with pytest.raises(SlideError, match="no DICOM whole-slide image series"):
        Slide(label_only)


def test_a_series_folder_fingerprint_covers_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    shutil.copyfile(SM_IMAGE, folder / "level0.dcm")
    before = slide_fingerprint(folder)
    assert before == slide_fingerprint(folder)
    _copy_as(SM_IMAGE, folder / "label.dcm", ImageType=["DERIVED", "PRIMARY", "LABEL", "NONE"])
    assert slide_fingerprint(folder) != before
