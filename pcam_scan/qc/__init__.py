"""Slide quality control inside the scan: ink, blur, folds and bubbles per heatmap cell.

Pure numpy, one job per module:
- `settings`: the thresholds (`QcSettings`, defaults from `pcam_scan.defaults`);
- `measures`: per-cell measures from a block's region (the pixels the scan reads anyway);
- `flags`: the bit flags (`INK`, `BLUR`, `FOLD`, `BUBBLE`) from the measures, and the slide-level
  blur decision made at finalize from the stored focus scores;
- `verdict`: a slide's share of tissue per reason and its verdict (pass, warn, not assessable).
"""
