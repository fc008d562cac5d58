"""The defaults a user sees, each defined once: the settings dataclasses, the CLI's options and
their help all read these names (the docs quote them). Plain values, no imports, so that
`pcam-scan --help` can show them without loading scipy or torch.

The model's batch size lives with the predictor's settings (`pcam_scan.model.settings`).
"""

from __future__ import annotations

# probabilities (each a different decision, all 0.5 today)
DECISION_THRESHOLD = 0.5
"""A slide is called positive when its probability is at least this (default rule, aggregator)."""
REGION_THRESHOLD = 0.5
"""Heatmap cells at or above this form lesion regions (outlines, features, exports, overlays)."""
DETECTION_THRESHOLD = 0.5
"""Peaks of the smoothed heatmap at or above this are lesion detections (FROC, viewer points)."""

# the scan's tiling
BLOCK_CELLS = 32
"""Cells per block side: the unit of work and the Zarr chunk of the heatmap."""
# The stride's default is the model's label size (every cell; 32 px for PCam), so it is resolved
# against the checkpoint: `pcam_scan.scan.settings.ScanSettings` (None) and `ScanRun.resolve`.

# slide decoding
SLIDE_BACKENDS = ("auto", "openslide", "tiffslide")
"""`--slide-backend` choices: per slide (`auto`), or one library for every slide."""
SLIDE_BACKEND = "auto"
"""tiffslide where it decodes a file bit-identically to OpenSlide at about 0.4x the CPU, OpenSlide
for the rest (`pcam_scan.slide_backends.open_slide_file`, docs/slides.md)."""

# lesion detections, in heatmap cells
DETECTION_SIGMA_CELLS = 1.0
DETECTION_MIN_DISTANCE_CELLS = 3.0

# evaluation
BOOTSTRAP_REPLICATES = 2000

# fitting the learned aggregator
AGGREGATOR_FOLDS = 5
AGGREGATOR_C = 1.0

# mining training patches from annotated slides
MAX_POSITIVES_PER_SLIDE = 2000
MAX_NEGATIVES_PER_SLIDE = 2000
NEGATIVES_PER_POSITIVE = 1.0
VALID_FRACTION = 0.2
HARD_NEGATIVE_FRACTION = 0.5
HARD_NEGATIVE_POOL_PER_SLIDE = 4000
HARD_NEGATIVE_MIN_PROBABILITY = 0.5
