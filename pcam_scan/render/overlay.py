"""A static overlay for reports: slide thumbnail, heatmap, lesion outlines, colour bar, caption.

Drawn with matplotlib's Agg canvas on a Figure of its own (no pyplot, no global state). Both
images are placed in slide millimetres, the thumbnail over the slide's full level-0 extent and the
heatmap sampled on the thumbnail's pixel raster with the viewer's sampling rule, so the report
and the viewer show the same cells in the same place. Without the slide file (moved, and no
--slides folder given) the heatmap is drawn on grey and the caption says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pcam_scan.diagnosis.contours import lesion_contours
from pcam_scan.errors import PcamScanError
from pcam_scan.lesions import RegionSettings
from pcam_scan.outputs import atomic_output
from pcam_scan.qc.flags import excluded_cells
from pcam_scan.render.heatmap_image import HeatmapPyramid, HeatmapStyle, colourise
from pcam_scan.render.slide_files import SlideLocator
from pcam_scan.render.summary import SlideSummary, summarise
from pcam_scan.slide_backends import open_slide_file
from pcam_scan.store import HeatmapReader

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

THUMBNAIL_PX = 1400
HEATMAP_ALPHA = 0.6
NO_SLIDE_GREY = 225
DPI = 150


@dataclass(frozen=True)
class OverlayImage:
    """Everything one slide's overlay shows, on one raster of `l0_per_px` level-0 px per pixel."""

    summary: SlideSummary
    slide_rgb: npt.NDArray[np.uint8]
    heatmap_rgba: npt.NDArray[np.uint8]
    l0_per_px: float
    slide_mpp_um_px: float
    outlines_l0_xy: tuple[npt.NDArray[np.float64], ...]
    style: HeatmapStyle
    slide_problem: str | None = None
    excluded: npt.NDArray[np.bool_] | None = None
    """Pixels of cells QC excluded (ink, fold, bubble), hatched on the pictures; None without QC."""

    def shrunk(self, max_px: int) -> OverlayImage:
        """A smaller copy for a contact sheet (thumbnail resampled, heatmap by nearest cell)."""
        from PIL import Image

        height, width = self.slide_rgb.shape[:2]
        factor = max(width, height) / max_px
        if factor <= 1:
            return self
        size_wh = (max(1, round(width / factor)), max(1, round(height / factor)))
        slide = Image.fromarray(self.slide_rgb).resize(size_wh, Image.Resampling.LANCZOS)
        heatmap = Image.fromarray(self.heatmap_rgba, mode="RGBA").resize(size_wh, Image.Resampling.NEAREST)
        excluded = None
        if self.excluded is not None:
            mask = Image.fromarray(self.excluded.astype(np.uint8) * 255).resize(size_wh, Image.Resampling.NEAREST)
            excluded = np.asarray(mask) > 0
        return dataclasses.replace(
            self,
            slide_rgb=np.asarray(slide),
            heatmap_rgba=np.asarray(heatmap),
            l0_per_px=self.l0_per_px * width / size_wh[0],
            excluded=excluded,
        )

    def blended(self) -> npt.NDArray[np.uint8]:
        """The heatmap laid over the thumbnail at the report's opacity (RGB uint8)."""
        alpha = self.heatmap_rgba[..., 3:4].astype(np.float32) / 255.0 * HEATMAP_ALPHA
        mixed = self.slide_rgb * (1.0 - alpha) + self.heatmap_rgba[..., :3] * alpha
        blended: npt.NDArray[np.uint8] = np.rint(mixed).astype(np.uint8)
        return blended


def load_overlay(
    reader: HeatmapReader, locator: SlideLocator, slide_id: str, style: HeatmapStyle, max_px: int = THUMBNAIL_PX
) -> OverlayImage:
    """Read what the overlay of one slide needs (StoreError when it has no heatmap)."""
    pyramid = HeatmapPyramid.from_store(reader, slide_id)
    stored = reader.stored_slide(slide_id)
    grid = pyramid.grid
    l0_per_px = max(grid.l0_width, grid.l0_height) / max_px
    size_wh = (max(1, math.ceil(grid.l0_width / l0_per_px)), max(1, math.ceil(grid.l0_height / l0_per_px)))
    slide_problem = None
    try:
        slide_rgb = _thumbnail(locator.locate(slide_id, stored.record), size_wh)
    except PcamScanError as err:
        slide_problem = str(err)
        slide_rgb = np.full((size_wh[1], size_wh[0], 3), NO_SLIDE_GREY, dtype=np.uint8)
    heatmap = colourise(pyramid.sample((0.0, 0.0), l0_per_px, size_wh), style)
    excluded = None
    if pyramid.qc_levels is not None:
        excluded = excluded_cells(pyramid.sample_qc((0.0, 0.0), l0_per_px, size_wh))
    contours = lesion_contours(pyramid.levels[0], grid, RegionSettings(style.threshold))
    outlines = [ring for c in contours for ring in (c.outer_l0_xy, *c.holes_l0_xy)]
    return OverlayImage(
        summary=summarise(stored),
        slide_rgb=slide_rgb,
        heatmap_rgba=heatmap,
        l0_per_px=l0_per_px,
        slide_mpp_um_px=grid.slide_mpp_um_px,
        outlines_l0_xy=tuple(outlines),
        style=style,
        slide_problem=slide_problem,
        excluded=excluded,
    )


def _thumbnail(path: Path | str, size_wh: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """The whole slide resized to exactly `size_wh` (so pixels map to level 0 by one scale)."""
    from PIL import Image

    slide_file = open_slide_file(path)
    try:
        thumb = slide_file.thumbnail((size_wh[0] * 2, size_wh[1] * 2))
    finally:
        slide_file.close()
    return np.asarray(thumb.convert("RGB").resize(size_wh, Image.Resampling.LANCZOS))


def draw_overlay(overlay: OverlayImage, out_path: Path) -> Path:
    """Write the overlay figure as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = overlay.slide_rgb.shape[:2]
    aspect = height / width
    fig = Figure(figsize=(9.0, max(3.5, 7.2 * aspect + 1.4)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.12, 0.84, 0.8))
    extent_mm = _extent_mm(overlay, width, height)
    ax.imshow(overlay.slide_rgb, extent=extent_mm, interpolation="antialiased")
    heatmap = overlay.heatmap_rgba.copy()
    heatmap[..., 3] = (heatmap[..., 3].astype(np.float32) * HEATMAP_ALPHA).astype(np.uint8)
    ax.imshow(heatmap, extent=extent_mm, interpolation="nearest")
    draw_outlines(ax, overlay, linewidth=1.1)
    draw_excluded(ax, overlay, extent_mm)
    ax.set_xlim(extent_mm[0], extent_mm[1])
    ax.set_ylim(extent_mm[2], extent_mm[3])
    ax.set_axis_off()
    draw_scale_bar(ax, extent_mm[1])
    draw_colour_bar(fig, overlay.style, (0.89, 0.2, 0.025, 0.64))
    fig.text(0.02, 0.965, overlay.summary.caption(), fontsize=10.5, weight="bold", va="top")
    fig.text(0.02, 0.06, _detail_line(overlay), fontsize=8, color="#444444", va="top")
    with atomic_output(out_path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return out_path


def _extent_mm(overlay: OverlayImage, width: int, height: int) -> tuple[float, float, float, float]:
    mm_per_px = overlay.l0_per_px * overlay.slide_mpp_um_px / 1000.0
    return (0.0, width * mm_per_px, height * mm_per_px, 0.0)


def draw_excluded(ax: Axes, overlay: OverlayImage, extent_mm: tuple[float, float, float, float]) -> None:
    """Hatch the areas QC excluded (ink, fold, bubble): no lesion is drawn or counted there."""
    if overlay.excluded is None or not overlay.excluded.any():
        return
    height, width = overlay.excluded.shape
    x0, x1, y0, y1 = extent_mm
    xs = np.linspace(x0, x1, width)
    ys = np.linspace(y1, y0, height) if y0 > y1 else np.linspace(y0, y1, height)
    ax.contourf(xs, ys, overlay.excluded.astype(np.float32), levels=[0.5, 1.5], colors="none", hatches=["////"])
    ax.contour(xs, ys, overlay.excluded.astype(np.float32), levels=[0.5], colors="#333333", linewidths=0.5)


def draw_outlines(ax: Axes, overlay: OverlayImage, linewidth: float) -> None:
    """Lesion outlines in slide millimetres: a dark line on a white halo, visible on any tissue."""
    from matplotlib import patheffects

    mm_per_l0 = overlay.slide_mpp_um_px / 1000.0
    halo = [patheffects.Stroke(linewidth=linewidth * 3, foreground="white"), patheffects.Normal()]
    for ring in overlay.outlines_l0_xy:
        closed = np.vstack([ring, ring[:1]]) * mm_per_l0
        ax.plot(closed[:, 0], closed[:, 1], color="#111111", linewidth=linewidth, path_effects=halo)


def draw_scale_bar(ax: Axes, width_mm: float, fontsize: float | None = None) -> None:
    """A scale bar of a round length, about a fifth of the image's width, at its lower left."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length_mm = nice_length(width_mm / 5)
    label = f"{length_mm:g} mm" if length_mm >= 1 else f"{length_mm * 1000:g} \u00b5m"
    from matplotlib.font_manager import FontProperties

    font = None if fontsize is None else FontProperties(size=fontsize)
    bar = AnchoredSizeBar(
        ax.transData,
        length_mm,
        label,
        "lower left",
        pad=0.5,
        sep=4,
        frameon=True,
        size_vertical=width_mm / 250,
        color="black",
        fontproperties=font,
    )
    bar.patch.set_alpha(0.8)
    ax.add_artist(bar)


def nice_length(at_most: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above `at_most` (a scale bar's length)."""
    power = 10.0 ** math.floor(math.log10(at_most))
    return next(m * power for m in (5, 2, 1) if m * power <= at_most * (1 + 1e-9))


def draw_colour_bar(fig: Figure, style: HeatmapStyle, rect: tuple[float, float, float, float]) -> None:
    """The probability colour bar at `rect` (figure fractions), grey up to the threshold."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(rect)
    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=matplotlib.colormaps[style.colormap])
    bar = fig.colorbar(mappable, cax=cax)
    bar.set_label("P(tumour)")
    cax.axhspan(0.0, style.threshold, color="#d5d9de", zorder=3)
    if style.threshold > 0.06:
        cax.text(
            0.5,
            style.threshold / 2,
            "hidden",
            rotation=90,
            ha="center",
            va="center",
            fontsize=7,
            color="#555555",
            zorder=4,
        )


def _detail_line(overlay: OverlayImage) -> str:
    summary = overlay.summary
    parts = [f"heatmap shown at p \u2265 {overlay.style.threshold:.2f} ({overlay.style.colormap})"]
    parts.append(f"{len(overlay.outlines_l0_xy)} outline{'s' if len(overlay.outlines_l0_xy) != 1 else ''}")
    if summary.method:
        parts.append(f"diagnosis by {summary.method}, decision threshold {summary.decision_threshold:.2f}")
    if summary.state and summary.state != "complete":
        parts.append(f"scan {summary.state}")
    if overlay.slide_problem:
        parts.append(f"slide image unavailable: {overlay.slide_problem}")
    return "; ".join(parts)
