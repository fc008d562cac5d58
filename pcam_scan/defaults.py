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

# lesion detections, in heatmap cells
DETECTION_SIGMA_CELLS = 1.0
DETECTION_MIN_DISTANCE_CELLS = 3.0

# evaluation
BOOTSTRAP_REPLICATES = 2000

# patients
STAGES_FILE = "stages.csv"
"""`pcam-scan stage` writes its table here unless --out says otherwise (beside the caller)."""
COMPARISON_DIR = "comparison"
"""`pcam-scan compare` writes its CSV, JSON and PNG in this folder unless --out says otherwise."""
NODES_PER_PATIENT = 5
"""Camelyon17's artificial patients have five lymph nodes (one slide each); `synth --patients`."""

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

# QuPath heatmap tiles (`export --format qupath-tiles`)
QUPATH_TILES_MAX_FEATURES = 100_000
"""Without --level, the finest pyramid level whose whole cell grid (tissue or not) has at most
this many cells: a Camelyon16-size slide (about 100k x 200k px at 0.243 um/px, 781 x 1562 cells)
gets level 2 (196 x 391 cells, 124 um tiles), few enough features for QuPath to stay responsive."""
