"""Lesion overlay data for the viewer: region outlines and point detections in level-0 pixels.

Computed from heatmap level 0 with `pcam_scan.diagnosis.contours` (the sub-cell outlines of the
regions of `pcam_scan.lesions`, the same that exports and diagnoses measure) and
`pcam_scan.lesions.detect_points`, at the threshold the user has chosen in the viewer. The
outlines follow the interpolated probability, corrected for the model's label rule, so under
PCam's rule they lie about half a cell inside the edge of the coloured cells. Lists are capped
(largest regions, most confident detections first) to keep the page
responsive on a heatmap full of noise.
"""

from __future__ import annotations

from pcam_scan.diagnosis.contours import lesion_contours
from pcam_scan.lesions import DetectionSettings, RegionSettings, detect_points
from pcam_scan.render.heatmap_image import HeatmapPyramid

MAX_REGIONS = 200
MAX_DETECTIONS = 200


def lesion_overlay(pyramid: HeatmapPyramid, threshold: float) -> dict[str, object]:
    """JSON-ready regions (measures and outline rings, holes included) and detections."""
    level0 = pyramid.levels[0]
    contours = lesion_contours(level0, pyramid.grid, RegionSettings(threshold))
    detections = detect_points(level0, pyramid.grid, DetectionSettings(threshold=threshold))
    return {
        "threshold": threshold,
        "region_count": len(contours),
        "regions": [
            {
                "area_mm2": c.region.area_mm2,
                "diameter_um": c.region.diameter_um,
                "centroid_l0_xy": list(c.region.centroid_l0_xy),
                "max_prob": c.region.max_prob,
                "n_cells": c.region.n_cells,
            }
            for c in contours[:MAX_REGIONS]
        ],
        "outlines_l0_xy": [
            ring.round(1).tolist() for c in contours[:MAX_REGIONS] for ring in (c.outer_l0_xy, *c.holes_l0_xy)
        ],
        "detection_count": len(detections),
        "detections": [{"l0_xy": list(d.l0_xy), "confidence": d.confidence} for d in detections[:MAX_DETECTIONS]],
    }
