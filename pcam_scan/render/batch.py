"""Rendering a whole store: one overlay PNG per slide and a contact sheet; each outcome is data.

A slide that cannot be drawn (never planned, unreadable heatmap) is recorded with its message
and every other slide goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pcam_scan.errors import PcamScanError
from pcam_scan.render.heatmap_image import HeatmapStyle
from pcam_scan.render.overlay import OverlayImage, draw_overlay, load_overlay
from pcam_scan.render.sheet import draw_contact_sheet
from pcam_scan.render.slide_files import SlideLocator
from pcam_scan.store import HeatmapReader
from pcam_scan.wording import count_noun

SHEET_THUMBNAIL_PX = 480
CONTACT_SHEET_NAME = "contact_sheet.png"


@dataclass(frozen=True)
class RenderResult:
    """One slide's outcome: the PNG written, or why there is none."""

    slide_id: str
    path: Path | None
    error: str | None = None
    note: str | None = None


def render_slide(
    reader: HeatmapReader, locator: SlideLocator, slide_id: str, out_path: Path, style: HeatmapStyle
) -> RenderResult:
    """One overlay PNG; a user-facing problem with the slide propagates as PcamScanError."""
    overlay = load_overlay(reader, locator, slide_id, style)
    draw_overlay(overlay, out_path)
    return RenderResult(slide_id, out_path, note=overlay.slide_problem)


def render_store(
    reader: HeatmapReader, locator: SlideLocator, out_dir: Path, style: HeatmapStyle
) -> tuple[list[RenderResult], Path | None]:
    """Every slide of the store to `out_dir/<id>.png`, and the contact sheet (None when no slide
    could be drawn). The sheet lists slides by descending probability, undiagnosed last."""
    results: list[RenderResult] = []
    small: list[OverlayImage] = []
    for slide_id in reader.list_slides():
        try:
            overlay = load_overlay(reader, locator, slide_id, style)
            path = draw_overlay(overlay, out_dir / f"{slide_id}.png")
        except PcamScanError as err:
            results.append(RenderResult(slide_id, None, error=str(err)))
            continue
        results.append(RenderResult(slide_id, path, note=overlay.slide_problem))
        small.append(overlay.shrunk(SHEET_THUMBNAIL_PX))
    if not small:
        return results, None
    small.sort(key=lambda o: (o.summary.probability is None, -(o.summary.probability or 0.0), o.summary.slide_id))
    sheet = draw_contact_sheet(
        small, out_dir / CONTACT_SHEET_NAME, f"{store_name(reader.uri)}: {count_noun(len(small), 'slide')}"
    )
    return results, sheet


def store_name(uri: str) -> str:
    """The store's name (`run.zarr`), not its full path or URL: what a sheet's title needs."""
    return PurePosixPath(uri.rstrip("/")).name or uri
