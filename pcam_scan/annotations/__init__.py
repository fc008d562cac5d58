"""Lesion annotations: reading (ASAP XML, NCRF JSON, QuPath GeoJSON), writing, rasterising."""
