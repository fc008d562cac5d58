"""The heatmap store (Zarr v3): one store per run, one group per slide. See docs/store.md.

Modules, one job each: `identity` (run identity and its hash), `ids` (slide ids), `fingerprint`
(slide file fingerprint), `schema` (every attribute, and the only place that spells their keys),
`location` (where the store lives), `prob_chunks` (the picklable writer of block chunks, and which
are done), `pyramid` and `ngff` (multiscale levels and their OME-NGFF metadata), `reader` (read
access), `heatmap_store` (the store itself), `queries` (statuses, complete slides' heatmaps, ids
matched to reference names).
"""

from pcam_scan.store.fingerprint import slide_fingerprint
from pcam_scan.store.heatmap_store import HeatmapStore
from pcam_scan.store.identity import RunIdentity
from pcam_scan.store.ids import slide_id_for_path, unique_slide_ids, validate_slide_id
from pcam_scan.store.location import StoreLocation
from pcam_scan.store.prob_chunks import ProbChunkWriter
from pcam_scan.store.pyramid import Pooling
from pcam_scan.store.reader import HeatmapReader
from pcam_scan.store.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SlideRecord,
    SlideState,
    SlideStatus,
    StoredSlide,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ProbChunkWriter",
    "HeatmapReader",
    "HeatmapStore",
    "Pooling",
    "RunIdentity",
    "SlideRecord",
    "SlideState",
    "SlideStatus",
    "StoredSlide",
    "StoreLocation",
    "slide_fingerprint",
    "slide_id_for_path",
    "unique_slide_ids",
    "validate_slide_id",
]
