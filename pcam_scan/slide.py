"""Whole-slide reading at any requested microns per pixel, over any slide backend.

Two jobs kept apart from the rest of the code: turning what a backend reports into a checked
`SlideInfo` (vendor, levels, MPP and where it came from), and reading a region of a plane of a
chosen MPP (`ReadPlan`), from the finest pyramid level at or below that MPP, resampled with an
antialiasing filter, with unscanned pixels white. The file itself is opened by
`pcam_scan.slide_backends` (the one door to slide files: OpenSlide or tiffslide, chosen per slide).

A slide is opened and closed where it is read (a Ray worker gets a path, never an open slide).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from pcam_scan.errors import MissingMppError, SlideError
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.slide_backends import BackendMetadata, RecordedMpp, SlideBackend, is_url, open_slide_file
from pcam_scan.slide_backends.base import rgb_array
from pcam_scan.validation import check_mpp, is_plausible_mpp

SLIDE_SUFFIXES = frozenset({".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide"})
"""File name endings of the whole-slide formats OpenSlide reads, for finding slides in folders (a
DICOM slide is a folder: `pcam_scan.slide_backends.dicom_series.holds_dicom`)."""

LEVEL_AS_IS_TOLERANCE = 0.01
"""A pyramid level within 1% of the requested MPP is used without resampling."""

_UM_PER_RESOLUTION_UNIT = {"centimeter": 10_000.0, "inch": 25_400.0}


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level: size in its own pixels, level-0 px per level px, and its MPP."""

    width: int
    height: int
    downsample: float
    mpp_um_px: float


@dataclass(frozen=True)
class SlideInfo:
    """What a slide is: checked dimensions, levels and MPP, with the MPP's source."""

    path: str
    backend: str
    vendor: str
    l0_width: int
    l0_height: int
    levels: tuple[LevelInfo, ...]
    mpp_um_px: float
    mpp_source: str
    objective_power: str | None
    series: str | None = None
    """A DICOM slide's series (`BackendMetadata.series`); None for a slide file."""

    @property
    def l0_size_mm(self) -> tuple[float, float]:
        return (self.l0_width * self.mpp_um_px / 1000.0, self.l0_height * self.mpp_um_px / 1000.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "backend": self.backend,
            "vendor": self.vendor,
            "l0_width": self.l0_width,
            "l0_height": self.l0_height,
            "mpp_um_px": self.mpp_um_px,
            "mpp_source": self.mpp_source,
            "objective_power": self.objective_power,
            "series": self.series,
            "levels": [
                {
                    "width": lv.width,
                    "height": lv.height,
                    "downsample": lv.downsample,
                    "mpp_um_px": lv.mpp_um_px,
                }
                for lv in self.levels
            ],
        }


@dataclass(frozen=True)
class ReadPlan:
    """How to produce pixels of a plane of `px_mpp_um_px` from one pyramid level.

    `px_mpp_um_px` is the requested MPP, or the level's own MPP when that lies within 1% of it
    (then no resampling happens and the plane is the level itself).
    """

    level: int
    level_downsample: float
    level_mpp_um_px: float
    px_mpp_um_px: float

    @property
    def resamples(self) -> bool:
        return self.px_mpp_um_px != self.level_mpp_um_px

    @property
    def level_px_per_px(self) -> float:
        """Level pixels per plane pixel (> 1 when the level is finer than the plane)."""
        return self.px_mpp_um_px / self.level_mpp_um_px


def resolve_mpp(recorded: RecordedMpp, path: str, override_um_px: float | None = None) -> tuple[float, str]:
    """The slide's MPP and its source: override, the format's own MPP, or TIFF resolution tags.

    An implausible or missing value raises `MissingMppError` naming the `--mpp` override.
    """
    if override_um_px is not None:
        return check_mpp("--mpp", override_um_px, MissingMppError), "override"
    hint = "pass --mpp UM_PER_PX to set it"
    mpp_x, mpp_y = recorded.mpp_xy_um_px
    source = recorded.source
    if mpp_x is None or mpp_y is None:
        unit = recorded.tiff_resolution_unit
        res_x, res_y = recorded.tiff_px_per_unit_xy
        res_y = res_y or res_x
        if unit in _UM_PER_RESOLUTION_UNIT and res_x and res_y and res_x > 0 and res_y > 0:
            mpp_x = _UM_PER_RESOLUTION_UNIT[unit] / res_x
            mpp_y = _UM_PER_RESOLUTION_UNIT[unit] / res_y
            source = "tiff-resolution"
        else:
            raise MissingMppError(f"{path}: the slide records no microns-per-pixel; {hint}")
    if not (is_plausible_mpp(mpp_x) and is_plausible_mpp(mpp_y)):
        raise MissingMppError(
            f"{path}: recorded MPP {mpp_x:.4g} x {mpp_y:.4g} um/px ({source}) is not plausible for a slide; {hint}"
        )
    if abs(mpp_x - mpp_y) > 0.02 * max(mpp_x, mpp_y):
        raise MissingMppError(f"{path}: non-square pixels ({mpp_x:.4g} x {mpp_y:.4g} um/px) are not supported; {hint}")
    return (mpp_x + mpp_y) / 2.0, source


def slide_info(metadata: BackendMetadata, path: str, mpp_override_um_px: float | None = None) -> SlideInfo:
    """A backend's metadata checked: a resolved MPP, every level's MPP, pixels to read."""
    mpp, source = resolve_mpp(metadata.recorded_mpp, path, mpp_override_um_px)
    width, height = metadata.l0_wh
    if width <= 0 or height <= 0:
        raise SlideError(f"{path}: slide has no pixels ({width}x{height})")
    check_slide_extent(path, width, height, mpp)
    return SlideInfo(
        path=path,
        backend=metadata.backend,
        vendor=metadata.vendor,
        l0_width=width,
        l0_height=height,
        levels=tuple(
            LevelInfo(width=w, height=h, downsample=ds, mpp_um_px=mpp * ds)
            for (w, h), ds in zip(metadata.level_wh, metadata.level_downsamples)
        ),
        mpp_um_px=mpp,
        mpp_source=source,
        objective_power=metadata.objective_power,
        series=metadata.series,
    )


def choose_read_plan(info: SlideInfo, target_mpp_um_px: float) -> ReadPlan:
    """The finest pyramid level at or below `target_mpp_um_px` (coarsest that is still as fine).

    A level within 1% of the target is used as is; a slide coarser than the target everywhere is
    read from level 0 and upsampled.
    """
    if not target_mpp_um_px > 0:
        raise SlideError(f"requested MPP {target_mpp_um_px} must be positive")
    chosen = 0
    for index, level in enumerate(info.levels):
        if level.mpp_um_px <= target_mpp_um_px * (1.0 + LEVEL_AS_IS_TOLERANCE):
            if level.mpp_um_px >= info.levels[chosen].mpp_um_px:
                chosen = index
    level = info.levels[chosen]
    as_is = abs(level.mpp_um_px / target_mpp_um_px - 1.0) <= LEVEL_AS_IS_TOLERANCE
    return ReadPlan(
        level=chosen,
        level_downsample=level.downsample,
        level_mpp_um_px=level.mpp_um_px,
        px_mpp_um_px=level.mpp_um_px if as_is else float(target_mpp_um_px),
    )


def plan_grid(info: SlideInfo, geometry: PatchGeometry) -> tuple[ReadPlan, CellGrid]:
    """How to read the slide at the geometry's MPP, and the heatmap grid that reading gives: the
    one way from a slide to its cells (scan planning, training labels, `info`, benchmarks)."""
    plan = choose_read_plan(info, geometry.mpp_um_px)
    return plan, CellGrid(info.l0_width, info.l0_height, info.mpp_um_px, plan.px_mpp_um_px, geometry)


class Slide:
    """An open whole-slide image with a checked MPP; use as a context manager so the file is closed."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        mpp_override_um_px: float | None = None,
        backend: str | type[SlideBackend] = "auto",
    ):
        self.path: str | Path = os.fspath(path) if is_url(path) else Path(path)
        self._file = open_slide_file(self.path, backend)
        try:
            self.info = slide_info(self._file.metadata, str(self.path), mpp_override_um_px)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def bytes_fetched(self) -> int | None:
        """Bytes fetched from object storage so far (a remote slide); None for a local file."""
        fetched = getattr(self._file, "bytes_fetched", None)
        return None if fetched is None else int(fetched)

    def _read_level(self, level: int, level_xy: tuple[int, int], size: tuple[int, int]) -> Image.Image:
        """Pixels of `level` starting at level pixel `level_xy`, on white outside the slide."""
        downsample = self.info.levels[level].downsample
        l0_xy = (round(level_xy[0] * downsample), round(level_xy[1] * downsample))
        return self._file.read_region(l0_xy, level, size)

    def read_px_region(self, plan: ReadPlan, px_xy: tuple[int, int], px_size: tuple[int, int]) -> np.ndarray:
        """Read-only uint8 (height, width, 3) of the plane `plan` describes, top-left at `px_xy`.

        Coordinates may lie outside the slide (a halo over the edge): those pixels are white.
        """
        width, height = px_size
        if width <= 0 or height <= 0:
            raise SlideError(f"region size {px_size} must be positive")
        if not plan.resamples:
            downsample = self.info.levels[plan.level].downsample
            l0_xy = (round(px_xy[0] * downsample), round(px_xy[1] * downsample))
            return self._file.read_region_rgb(l0_xy, plan.level, (width, height))
        scale = plan.level_px_per_px
        src_x0, src_y0 = px_xy[0] * scale, px_xy[1] * scale
        src_x1, src_y1 = (px_xy[0] + width) * scale, (px_xy[1] + height) * scale
        margin = math.ceil(2.0 * max(scale, 1.0)) + 1  # the bicubic filter's reach
        read_x0 = math.floor(src_x0) - margin
        read_y0 = math.floor(src_y0) - margin
        read_w = math.ceil(src_x1) + margin - read_x0
        read_h = math.ceil(src_y1) + margin - read_y0
        source = self._read_level(plan.level, (read_x0, read_y0), (read_w, read_h))
        box = (src_x0 - read_x0, src_y0 - read_y0, src_x1 - read_x0, src_y1 - read_y0)
        resized = source.resize((width, height), resample=Image.Resampling.BICUBIC, box=box, reducing_gap=None)
        return rgb_array(resized)

    def read_l0_region_at_mpp(
        self, l0_xy: tuple[float, float], l0_size: tuple[float, float], mpp_um_px: float
    ) -> tuple[np.ndarray, ReadPlan]:
        """Convenience for callers in level-0 terms: the region at `mpp_um_px` and the plan used."""
        plan = choose_read_plan(self.info, mpp_um_px)
        l0_per_px = plan.px_mpp_um_px / self.info.mpp_um_px
        px_x = round(l0_xy[0] / l0_per_px)
        px_y = round(l0_xy[1] / l0_per_px)
        px_w = max(1, round(l0_size[0] / l0_per_px))
        px_h = max(1, round(l0_size[1] / l0_per_px))
        return self.read_px_region(plan, (px_x, px_y), (px_w, px_h)), plan

    def check_readable(self) -> None:
        """Decode a small window of the coarsest level, so a slide whose tiles are corrupt is
        refused up front rather than in the middle of a scan."""
        level = len(self.info.levels) - 1
        lv = self.info.levels[level]
        size = (min(lv.width, 512), min(lv.height, 512))
        self._read_level(level, ((lv.width - size[0]) // 2, (lv.height - size[1]) // 2), size)


MAX_SLIDE_SIDE_MM = 100.0  # a glass slide is 75 x 25 mm


def check_slide_extent(path: str, l0_width: int, l0_height: int, mpp_um_px: float) -> None:
    """Refuse a slide larger than any glass slide before its masks and grids are allocated."""
    side_mm = max(l0_width, l0_height) * mpp_um_px / 1000.0
    if side_mm > MAX_SLIDE_SIDE_MM:
        raise SlideError(
            f"{path}: {l0_width} x {l0_height} px at {mpp_um_px:g} um/px is {side_mm:.0f} mm a side, "
            f"larger than any glass slide ({MAX_SLIDE_SIDE_MM:.0f} mm); refusing to allocate for it"
        )


def open_slide(path: str | os.PathLike[str], mpp_override_um_px: float | None = None, backend: str = "auto") -> Slide:
    """Open a slide for reading with `backend` (a name from `pcam_scan.slide_backends.SLIDE_BACKENDS`);
    raises `SlideError` / `MissingMppError` with one clear line."""
    return Slide(path, mpp_override_um_px, backend)
