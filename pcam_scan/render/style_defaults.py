"""The heatmap style's defaults, importable without numpy or zarr: the `render` and `view`
parsers show them in `--help`, which must stay fast."""

DEFAULT_COLORMAP = "viridis"
DEFAULT_THRESHOLD = 0.5
