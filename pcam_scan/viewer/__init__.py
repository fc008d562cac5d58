"""The web viewer of a heatmap store (`pcam-scan view`).

Modules, one job each: `catalog` (the store's slides, files, versions and caches, read-only),
`tiles` (Deep Zoom grid, slide tiles from the slide backend, heatmap tiles), `overlays` (lesion
outlines and detections as JSON), `app` (the Starlette routes, errors and caching headers),
`server` (uvicorn on a socket bound first), `lru` (a small thread-safe cache). The browser side
is in `web/`; OpenSeadragon comes from npm: `npm install --prefix pcam_scan/viewer/web`.
"""
