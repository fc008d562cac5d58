"""A contact sheet of a batch: every slide's overlay small, titled with its call, on one PNG.

For scanning a batch by eye for the slides that need attention: positives are titled in red,
negatives in green, slides without a diagnosis in grey, in the order given (the batch renderer
puts the most probable first). Each panel has its own scale bar (slides differ in size), the
sheet one P(tumour) colour bar, and the figure is cropped to what it draws (no empty panels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pcam_scan.outputs import atomic_output
from pcam_scan.render.overlay import (
    HEATMAP_ALPHA,
    OverlayImage,
    draw_colour_bar,
    draw_excluded,
    draw_outlines,
    draw_scale_bar,
)

MAX_COLUMNS = 6
PANEL_INCH = 2.6
DPI = 110
CALL_COLOURS = {"positive": "#a61b1b", "negative": "#1b6b34"}


def draw_contact_sheet(overlays: Sequence[OverlayImage], out_path: Path, title: str) -> Path:
    """Write the sheet of `overlays` (at least one) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not overlays:
        raise ValueError("a contact sheet needs at least one overlay")
    columns = min(MAX_COLUMNS, len(overlays))
    rows = math.ceil(len(overlays) / columns)
    bar_inch = 0.9
    width_inch = columns * PANEL_INCH + bar_inch
    height_inch = rows * (PANEL_INCH + 0.35) + 0.45
    fig = Figure(figsize=(width_inch, height_inch), dpi=DPI)
    FigureCanvasAgg(fig)
    panels_right = columns * PANEL_INCH / width_inch
    axes = fig.subplots(rows, columns, squeeze=False)
    fig.subplots_adjust(left=0.01, right=panels_right, bottom=0.02, top=1 - 0.45 / height_inch, wspace=0.06, hspace=0.3)
    for ax in axes.flat[len(overlays) :]:
        fig.delaxes(ax)  # no empty panels
    for ax, overlay in zip(axes.flat, overlays):
        ax.set_axis_off()
        height, width = overlay.slide_rgb.shape[:2]
        mm_per_px = overlay.l0_per_px * overlay.slide_mpp_um_px / 1000.0
        ax.imshow(
            overlay.blended(), extent=(0.0, width * mm_per_px, height * mm_per_px, 0.0), interpolation="antialiased"
        )
        draw_outlines(ax, overlay, linewidth=0.6)
        draw_excluded(ax, overlay, (0.0, width * mm_per_px, height * mm_per_px, 0.0))
        draw_scale_bar(ax, width * mm_per_px, fontsize=6.5)
        summary = overlay.summary
        if summary.call is None:
            label = f"{summary.slide_id}\n{summary.state or 'not scanned'}"
        else:
            label = f"{summary.slide_id}\n{summary.verdict()}"
        ax.set_title(label, fontsize=8.5, color=CALL_COLOURS.get(summary.call or "", "#555555"))
    bar_left = panels_right + 0.25 / width_inch
    bar_height = min(0.7, 2.2 / height_inch)
    draw_colour_bar(fig, overlays[0].style, (bar_left, 0.5 - bar_height / 2, 0.14 / width_inch, bar_height))
    fig.suptitle(
        f"{title}  (heatmap at p \u2265 {overlays[0].style.threshold:.2f}, opacity {HEATMAP_ALPHA})",
        fontsize=10,
        y=1 - 0.08 / height_inch,
        va="top",
    )
    with atomic_output(out_path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.08)
    return out_path
