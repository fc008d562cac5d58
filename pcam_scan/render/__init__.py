"""Heatmaps as pictures for people: the pieces the viewer and the static renders share.

Modules, one job each: `heatmap_image` (sample the probability pyramid on a pixel raster and
colour it), `summary` (a slide's status and diagnosis in one line), `slide_files` (find a
slide's file, also after it moved), `overlay` (one slide's report figure), `sheet` (a batch's
contact sheet), `batch` (render a whole store). Lesion outlines come from
`pcam_scan.diagnosis.contours`, the same ones the exports write.
"""
