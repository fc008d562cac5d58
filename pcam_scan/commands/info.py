"""`pcam-scan info SLIDE`: what a slide is, and how it will be read at PCam geometry."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pcam_scan.commands.options import add_slide_backend_option


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe a slide: levels, MPP, PCam read plan",
        description="Open a slide the way the scanner does and print its vendor, dimensions, "
        "pyramid levels, MPP and where it came from, then how it will be read at the model's "
        "um/px (level, resampling) and the size of its heatmap grid. A slide that records no MPP "
        "needs --mpp.",
    )
    parser.add_argument("slide", help="path to a whole-slide image (or a folder of one DICOM series)")
    parser.add_argument("--mpp", type=float, default=None, help="override the slide's um/px")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_slide_backend_option(parser)
    parser.set_defaults(func=run)


def describe(slide_path: str, mpp_override: float | None, backend: str = "auto") -> dict[str, object]:
    """Slide info plus the read plan and heatmap grid at the default PCam geometry."""
    from pcam_scan.geometry import PatchGeometry
    from pcam_scan.slide import open_slide, plan_grid

    geometry = PatchGeometry()
    with open_slide(slide_path, mpp_override, backend) as slide:
        slide.check_readable()
        info = slide.info
        plan, grid = plan_grid(info, geometry)
    return {
        **info.to_dict(),
        "pcam_read": {
            "model_mpp_um_px": geometry.mpp_um_px,
            "level": plan.level,
            "level_mpp_um_px": plan.level_mpp_um_px,
            "px_mpp_um_px": plan.px_mpp_um_px,
            "resampled": plan.resamples,
            "cell_grid_rows_cols": [grid.rows, grid.cols],
            "cell_um": grid.geometry.cell_px * grid.px_mpp_um_px,
        },
    }


def format_text(desc: dict[str, Any]) -> str:
    read = desc["pcam_read"]
    lines = [
        f"slide         {desc['path']}",
        f"vendor        {desc['vendor']} (read by {desc['backend']})",
        *([f"series        {desc['series']}"] if desc.get("series") else []),
        f"dimensions    {desc['l0_width']} x {desc['l0_height']} px (level 0)",
        f"mpp           {desc['mpp_um_px']:.4f} um/px ({desc['mpp_source']})",
        f"objective     {desc['objective_power'] or 'unknown'}",
        "levels        "
        + "; ".join(
            f"{i}: {lv['width']}x{lv['height']} ds {lv['downsample']:.3f} ({lv['mpp_um_px']:.3f} um/px)"
            for i, lv in enumerate(desc["levels"])
        ),
        f"pcam read     level {read['level']} at {read['px_mpp_um_px']:.4f} um/px"
        + (" (resampled)" if read["resampled"] else " (as is)"),
        f"heatmap grid  {read['cell_grid_rows_cols'][0]} x {read['cell_grid_rows_cols'][1]} cells "
        f"of {read['cell_um']:.1f} um",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    desc = describe(args.slide, args.mpp, args.slide_backend)
    print(json.dumps(desc, indent=2) if args.json else format_text(desc))
    return 0
