"""What the viewer serves: the store's slides by id, their files, heatmaps and tiles, cached.

Read-only: the store is opened with mode "r" and nothing is ever written. A slide is addressed
only by a store id (checked with the store's own rules and looked up among the store's slides);
its file comes from the store's record through `SlideLocator`, never from a request.

Every slide has a version token: a digest of what its tiles depend on (store, model and settings,
the slide file's fingerprint, status, counts, and for a slide still being scanned the number of
blocks written). Tile URLs carry it, so a tile of a complete slide can be cached for good, and a
slide that is still growing gets new URLs as blocks arrive.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import cast

from pcam_scan.defaults import VIEWER_READ_TIMEOUT_S, VIEWER_READS_PER_SLIDE
from pcam_scan.diagnosis.features import FeatureSettings
from pcam_scan.diagnosis.patient_files import read_patients
from pcam_scan.diagnosis.rule import SizeCategory
from pcam_scan.diagnosis.staging import stage_patients
from pcam_scan.errors import ConfigError, PcamScanError, StoreError
from pcam_scan.geometry import CellGrid
from pcam_scan.render.heatmap_image import HeatmapPyramid, HeatmapStyle
from pcam_scan.render.slide_files import SlideLocator
from pcam_scan.render.style_defaults import DEFAULT_COLORMAP, DEFAULT_THRESHOLD
from pcam_scan.render.summary import SlideSummary, summarise
from pcam_scan.slide_backends import DEFAULT_SLIDE_BACKEND, check_backend_name
from pcam_scan.store import HeatmapStore, SlideState, StoredSlide
from pcam_scan.store.guarded_store import ReadIsolation
from pcam_scan.store.identity import canonical_json
from pcam_scan.store.location import StoreLocation
from pcam_scan.store.queries import model_calibration
from pcam_scan.store.validation import DamagedSlideError
from pcam_scan.validation import check_probability
from pcam_scan.viewer.lru import LruCache
from pcam_scan.viewer.overlays import lesion_overlay
from pcam_scan.viewer.reference import find_annotation_file, reference_overlay
from pcam_scan.viewer.tiles import DEFAULT_OVERLAP_PX, DEFAULT_TILE_PX, DeepZoomGrid, SlideTiles


@dataclass(frozen=True)
class ViewerSettings:
    """What `pcam-scan view` serves and how."""

    store_uri: str
    slides_dir: Path | str | None = None
    tile_px: int = DEFAULT_TILE_PX
    overlap_px: int = DEFAULT_OVERLAP_PX
    jpeg_quality: int = 85
    colormap: str = DEFAULT_COLORMAP
    default_threshold: float = DEFAULT_THRESHOLD
    cached_slides: int = 16
    annotations_dir: Path | None = None
    """Reference annotations (ASAP XML, GeoJSON, NCRF JSON) matched by slide name."""
    slide_backend: str = DEFAULT_SLIDE_BACKEND
    """The library that reads the slides (`pcam_scan.slide_backends.SLIDE_BACKENDS`)."""
    patients_file: Path | None = None
    """`slide_id,patient,node` (pcam_scan.diagnosis.patient_files): the list groups by patient."""
    reads_per_slide: int = VIEWER_READS_PER_SLIDE
    """Requests reading one slide at once (pcam_scan.viewer.isolation): a stalled slide holds no more threads."""
    read_timeout_s: float = VIEWER_READ_TIMEOUT_S
    """How long a request waits for its slide's read before the answer is 503 or 504."""

    def __post_init__(self) -> None:
        if self.reads_per_slide < 1:
            raise ConfigError("a slide needs at least one read at a time")
        if not 0 < self.read_timeout_s <= 3600:
            raise ConfigError(f"read timeout {self.read_timeout_s} s must lie in (0, 3600]")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"JPEG quality {self.jpeg_quality} must lie in 1..100")
        if self.cached_slides < 1:
            raise ConfigError("at least one slide must be cached")
        if self.annotations_dir is not None and not Path(self.annotations_dir).is_dir():
            raise ConfigError(f"--annotations {self.annotations_dir}: not a folder")
        HeatmapStyle(self.default_threshold, self.colormap)  # validates both
        DeepZoomGrid(1, 1, self.tile_px, self.overlap_px)  # validates the tiling
        check_backend_name(self.slide_backend)

    def style(self, threshold: float) -> HeatmapStyle:
        return HeatmapStyle(threshold, self.colormap)


@dataclass(frozen=True)
class SlideView:
    """One slide as the viewer serves it at one moment."""

    stored: StoredSlide
    grid: CellGrid
    deep_zoom: DeepZoomGrid
    version: str = field(repr=False)

    @property
    def slide_id(self) -> str:
        return self.stored.slide_id

    @property
    def complete(self) -> bool:
        status = self.stored.status
        return status is not None and status.state is SlideState.COMPLETE


class SlideCatalog:
    """The store, opened read-only, with the caches the viewer's requests share."""

    def __init__(self, settings: ViewerSettings, isolation: ReadIsolation | None = None) -> None:
        """With `isolation`, every store file read runs through it by slide (the viewer's store
        gate, pcam_scan.viewer.isolation); a store URL is read without it."""
        self.settings = settings
        is_url = StoreLocation(settings.store_uri).is_url
        self.store = HeatmapStore.open(settings.store_uri, mode="r", isolation=None if is_url else isolation)
        self.locator = SlideLocator(settings.slides_dir)
        self._pyramids: LruCache[HeatmapPyramid] = LruCache(settings.cached_slides)
        self._tiles: LruCache[SlideTiles] = LruCache(settings.cached_slides)
        self._lesions: LruCache[dict[str, object]] = LruCache(4 * settings.cached_slides)
        self._references: LruCache[dict[str, object]] = LruCache(settings.cached_slides)
        self.patients = None if settings.patients_file is None else read_patients(settings.patients_file)

    def summaries(self) -> list[SlideSummary]:
        """Every slide group of the store, in id order; an unreadable group says so."""
        out = []
        for slide_id in self.store.list_slides():
            try:
                status = self.store.slide_status(slide_id)
                if status is not None and status.state is SlideState.DAMAGED:
                    out.append(SlideSummary(slide_id, SlideState.DAMAGED.value, status.message))
                    continue
                out.append(summarise(self.store.stored_slide(slide_id)))
            except PcamScanError as err:  # a StoreError, or its storage stalled (SlideBusyError)
                out.append(SlideSummary(slide_id, None, f"unreadable: {err}"))
        return out

    def slide_list(self) -> dict[str, object]:
        """The slide list's JSON: every slide, and with a patients file each slide's patient and
        node and each patient's pN stage (pcam_scan.diagnosis.staging) from the stored diagnoses."""
        summaries = self.summaries()
        slides = [summary.to_json() for summary in summaries]
        if self.patients is None:
            return {"store": self.store.uri, "slides": slides}
        where = {node.slide_id.lower(): node for node in self.patients}
        for slide in slides:
            node = where.get(str(slide["slide_id"]).lower())
            slide["patient"], slide["node"] = (None, None) if node is None else (node.patient, node.node)
        results = {
            s.slide_id: (cast(SizeCategory, s.category) if s.call else None, s.state or "unknown", s.message or "")
            for s in summaries
        }
        patients = [
            {
                "patient": stage.patient,
                "stage": stage.stage,
                "at_least": stage.at_least,
                "at_most": stage.at_most,
                "slides": [n.slide_id for n in stage.nodes],
                "deciding_slides": stage.deciding_slides(),
                "unassessed": [f"{n.slide_id} ({n.status})" for n in stage.unassessed()],
            }
            for stage in stage_patients(self.patients, results)
        ]
        return {"store": self.store.uri, "slides": slides, "patients": patients}

    def has_slide(self, slide_id: str) -> bool:
        """Whether the (already validated) id names a slide group of the store."""
        return slide_id in self.store.list_slides()

    def view(self, slide_id: str) -> SlideView:
        """The slide with its grids and version; StoreError when it has no heatmap to show."""
        if not self.has_slide(slide_id):
            raise StoreError(f"slide {slide_id!r} is not in the store")
        status = self.store.slide_status(slide_id)
        if status is not None and status.state is SlideState.DAMAGED:
            raise DamagedSlideError(slide_id, status.message or "unreadable")
        stored = self.store.stored_slide(slide_id)
        grid = self.store.read_grid(slide_id)
        deep_zoom = DeepZoomGrid(grid.l0_width, grid.l0_height, self.settings.tile_px, self.settings.overlap_px)
        identity: dict[str, object] = {
            "store": self.store.uri,
            "model_id": stored.model_id,
            "settings_hash": stored.settings_hash,
            "fingerprint": stored.record.fingerprint,
            "status": stored.status.to_attrs() if stored.status else None,
            "counts": dict(stored.counts),
            "tiles": [
                self.settings.tile_px,
                self.settings.overlap_px,
                self.settings.jpeg_quality,
                self.settings.colormap,
            ],
        }
        if stored.status is None or stored.status.state is not SlideState.COMPLETE:
            identity["blocks_done"] = len(self.store.done_blocks(slide_id))
        version = hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:20]
        return SlideView(stored, grid, deep_zoom, version)

    def pyramid(self, view: SlideView) -> HeatmapPyramid:
        return self._pyramids.get_or_make(
            (view.slide_id, view.version), lambda: HeatmapPyramid.from_store(self.store, view.slide_id)
        )

    def slide_tiles(self, view: SlideView) -> SlideTiles:
        """The slide's tile source; SlideError when its file cannot be found or opened."""
        record = view.stored.record

        def open_tiles() -> SlideTiles:
            path = self.locator.locate(view.slide_id, record)
            return SlideTiles(path, view.deep_zoom, self.settings.jpeg_quality, self.settings.slide_backend)

        return self._tiles.get_or_make((view.slide_id, record.fingerprint), open_tiles)

    def lesions(self, view: SlideView, threshold: float) -> dict[str, object]:
        key = (view.slide_id, view.version, round(threshold, 4))
        return self._lesions.get_or_make(key, lambda: lesion_overlay(self.pyramid(view), threshold))

    def annotation_file(self, view: SlideView) -> Path | None:
        """The slide's reference annotation file, or None (no folder given, or no file)."""
        if self.settings.annotations_dir is None:
            return None
        stem = PurePath(view.stored.record.path).stem
        return find_annotation_file(Path(self.settings.annotations_dir), (view.slide_id, stem))

    def reference(self, view: SlideView) -> dict[str, object]:
        """The reference layer's rings; StoreError when the slide has no annotation file."""
        path = self.annotation_file(view)
        if path is None:
            raise StoreError(f"no reference annotations for slide {view.slide_id!r}")
        return self._references.get_or_make((view.slide_id, str(path)), lambda: reference_overlay(path))

    def probe(self, view: SlideView, l0_xy: tuple[float, float]) -> dict[str, object]:
        """What lies under a level-0 point: the cell, the point in um, and its probability
        (None where nothing was predicted, or outside the slide)."""
        grid = view.grid
        row, col = grid.l0_to_cell(l0_xy)
        inside = 0 <= l0_xy[0] < grid.l0_width and 0 <= l0_xy[1] < grid.l0_height
        probability = None
        if inside and 0 <= row < grid.rows and 0 <= col < grid.cols:
            value = float(self.pyramid(view).levels[0][row, col])
            probability = value if math.isfinite(value) else None
        return {
            "inside": inside,
            "cell_rc": [row, col],
            "l0_xy": list(l0_xy),
            "um_xy": [l0_xy[0] * grid.slide_mpp_um_px, l0_xy[1] * grid.slide_mpp_um_px],
            "probability": probability,
        }

    def slide_json(self, view: SlideView) -> dict[str, object]:
        """Everything the viewer page needs to set up its layers, scale bar and side panel."""
        grid = view.grid
        try:
            self.slide_tiles(view)
            slide_problem = None
        except PcamScanError as err:  # shown on the page: the heatmap can be viewed without it
            slide_problem = str(err)
        return {
            "summary": summarise(view.stored).to_json(),
            "calibration": model_calibration(self.store),
            "version": view.version,
            "complete": view.complete,
            "l0_width": grid.l0_width,
            "l0_height": grid.l0_height,
            "slide_mpp_um_px": grid.slide_mpp_um_px,
            "cell_um": grid.cell_um,
            "grid_rows": grid.rows,
            "grid_cols": grid.cols,
            "tile_px": view.deep_zoom.tile_px,
            "overlap_px": view.deep_zoom.overlap_px,
            "max_level": view.deep_zoom.max_level,
            "slide_available": slide_problem is None,
            "slide_problem": slide_problem,
            "default_threshold": self.settings.default_threshold,
            "reference_annotations": _name_or_none(self.annotation_file(view)),
            # the diagnosis measures its lesions at the feature settings' threshold, not the
            # slider's (the record keeps the features, not their settings: the default)
            "lesion_threshold": FeatureSettings().lesion_threshold,
            "colormap": self.settings.colormap,
            "colormap_lut": self.settings.style(self.settings.default_threshold).lut[:, :3].tolist(),
        }


def _name_or_none(path: Path | None) -> str | None:
    return None if path is None else path.name


def parse_threshold(raw: str | None, default: float) -> float:
    """A threshold from a query string; ConfigError when it is not a number in [0, 1]."""
    if raw is None:
        return default
    if len(raw) > 32:
        raise ConfigError("threshold must be a number in [0, 1]")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"threshold {raw!r} must be a number in [0, 1]") from None
    return check_probability("threshold", value)
