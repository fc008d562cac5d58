"""A contact sheet of a batch: every slide's overlay small, titled with its call, on one PNG.

For scanning a batch by eye for the slides that need attention: positives are titled in red,
negatives in green, slides without a diagnosis in grey, in the order given (the batch renderer
puts the most probable first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pcam_scan.outputs import atomic_output
from pcam_scan.render.overlay import HEATMAP_ALPHA, OverlayImage, draw_outlines

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
    fig = Figure(figsize=(columns * PANEL_INCH, rows * (PANEL_INCH + 0.35) + 0.5), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, overlay in zip(axes.flat, overlays):
        height, width = overlay.slide_rgb.shape[:2]
        mm_per_px = overlay.l0_per_px * overlay.slide_mpp_um_px / 1000.0
        ax.imshow(overlay.blended(), extent=(0.0, width * mm_per_px, height * mm_per_px, 0.0), interpolation="antialiased")
        draw_outlines(ax, overlay, linewidth=0.6)
        summary = overlay.summary
        if summary.call is None:
            label = f"{summary.slide_id}\n{summary.state or 'not scanned'}"
        else:
            label = f"{summary.slide_id}\n{summary.verdict()}"
        ax.set_title(label, fontsize=8.5, color=CALL_COLOURS.get(summary.call or "", "#555555"))
    fig.suptitle(f"{title}  (heatmap at p \u2265 {overlays[0].style.threshold:.2f}, opacity {HEATMAP_ALPHA})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_output(out_path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return out_path
