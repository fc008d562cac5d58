"""The heatmap style's defaults, importable without numpy or zarr: the `render` and `view`
parsers show them in `--help`, which must stay fast."""

from pcam_scan.defaults import REGION_THRESHOLD

DEFAULT_COLORMAP = "viridis"
DEFAULT_THRESHOLD = REGION_THRESHOLD  # the heatmap is shown where the lesion regions are
