"""The store's attribute schema: what the root and each slide group record, encoded as JSON.

Everything pcam-scan writes lives under one namespace key, `pcam_scan`, in the group attributes
(the OME-NGFF metadata of `prob` lives under `ome`, as that spec asks). Reading goes through the
functions here, so a missing or malformed field becomes a StoreError naming the field.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pcam_scan.defaults import BLOCK_CELLS
from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid, PatchGeometry, check_label_rule
from pcam_scan.store.identity import RunIdentity, package_versions

FORMAT_NAME = "pcam-scan-heatmaps"
FORMAT_VERSION = 1
ATTRS_KEY = "pcam_scan"

PROB = "prob"
TISSUE = "tissue"
BLOCKS_DONE = "blocks_done"
DEFAULT_BLOCK_CELLS = BLOCK_CELLS


class SlideState(enum.StrEnum):
    """Where a slide stands. `complete` is written last, after every byte of its data."""

    PLANNED = "planned"
    COMPLETE = "complete"
    FAILED = "failed"
    DAMAGED = "damaged"  # never stored: what a reader reports for a slide it cannot believe


@dataclass(frozen=True)
class SlideStatus:
    state: SlideState
    message: str | None = None

    def to_attrs(self) -> dict[str, object]:
        return {"state": self.state.value, "message": self.message}

    @classmethod
    def from_attrs(cls, raw: object) -> SlideStatus:
        if not isinstance(raw, Mapping) or "state" not in raw:
            raise StoreError(f"malformed slide status {raw!r}")
        try:
            state = SlideState(raw["state"])
            if state is SlideState.DAMAGED:
                raise ValueError(state)
        except (ValueError, TypeError) as err:
            raise StoreError(f"unknown slide state {raw['state']!r}") from err
        message = raw.get("message")
        return cls(state, None if message is None else str(message))


@dataclass(frozen=True)
class SlideRecord:
    """Where a slide's heatmap came from: the file path as given and its content fingerprint."""

    path: str
    fingerprint: str

    def to_attrs(self) -> dict[str, object]:
        return {"path": self.path, "fingerprint": self.fingerprint}

    @classmethod
    def from_attrs(cls, raw: object) -> SlideRecord:
        if not isinstance(raw, Mapping):
            raise StoreError(f"malformed slide record {raw!r}")
        return cls(path=str(raw.get("path", "")), fingerprint=str(raw.get("fingerprint", "")))


@dataclass(frozen=True)
class StoredSlide:
    """Everything a store records about one slide, for tables, the viewer and the diagnosis."""

    slide_id: str
    status: SlideStatus | None
    record: SlideRecord
    model_id: str | None
    settings_hash: str | None
    counts: Mapping[str, int | float] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)
    diagnosis: Mapping[str, object] | None = None


def grid_to_attrs(grid: CellGrid) -> dict[str, object]:
    g = grid.geometry
    return {
        "l0_width": grid.l0_width,
        "l0_height": grid.l0_height,
        "slide_mpp_um_px": grid.slide_mpp_um_px,
        "px_mpp_um_px": grid.px_mpp_um_px,
        "geometry": {
            "patch_px": g.patch_px,
            "label_px": g.label_px,
            "mpp_um_px": g.mpp_um_px,
            "stride_px": g.stride_px,
            "label_rule": g.label_rule,
        },
        # Derived, for readers that do not use pcam_scan:
        "rows": grid.rows,
        "cols": grid.cols,
        "cell_um": cell_um(grid),
    }


def cell_um(grid: CellGrid) -> float:
    """Side of one cell in micrometres: stride in read-plane px times the read plane's MPP."""
    return grid.geometry.cell_px * grid.px_mpp_um_px


def grid_from_attrs(raw: object) -> CellGrid:
    try:
        grid = require_mapping(raw, "grid")
        geometry = require_mapping(grid["geometry"], "grid.geometry")
        return CellGrid(
            l0_width=int(grid["l0_width"]),
            l0_height=int(grid["l0_height"]),
            slide_mpp_um_px=float(grid["slide_mpp_um_px"]),
            px_mpp_um_px=float(grid["px_mpp_um_px"]),
            geometry=PatchGeometry(
                patch_px=int(geometry["patch_px"]),
                label_px=int(geometry["label_px"]),
                mpp_um_px=float(geometry["mpp_um_px"]),
                stride_px=int(geometry["stride_px"]),
                # stores written before the rule was recorded hold PCam-rule heatmaps
                label_rule=check_label_rule(geometry.get("label_rule", "pcam-any")),
            ),
        )
    except (KeyError, TypeError, ValueError, OverflowError, ConfigError) as err:
        raise StoreError(f"malformed grid attributes ({type(err).__name__}: {err})") from err


def require_mapping(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise StoreError(f"malformed {what} attributes: expected a mapping, got {raw!r}")
    return raw


def root_attrs(run: RunIdentity) -> dict[str, object]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": run.model_id,
        "settings_hash": run.settings_hash,
        "settings": dict(run.settings),
        "versions": package_versions(),
    }


def check_root_attrs(uri: str, attrs: Mapping[str, Any], run: RunIdentity | None) -> None:
    """Refuse a store of another format, format version, model or settings."""
    ours = attrs.get(ATTRS_KEY)
    if not isinstance(ours, Mapping) or ours.get("format") != FORMAT_NAME:
        raise StoreError(f"{uri} is a Zarr store but not a pcam-scan heatmap store")
    if ours.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{uri} has heatmap store format version {ours.get('format_version')!r}; "
            f"this pcam-scan reads version {FORMAT_VERSION}"
        )
    if run is None:
        return
    clashes = [
        f"{name} {ours.get(name)!r} in the store, {ours_now!r} for this run"
        for name, ours_now in (("model_id", run.model_id), ("settings_hash", run.settings_hash))
        if ours.get(name) != ours_now
    ]
    if clashes:
        raise StoreError(
            f"{uri} holds results of another run ({'; '.join(clashes)}); "
            "use a new store, or the model and settings it was made with"
        )


def finite_numbers(values: Mapping[str, object], what: str) -> dict[str, int | float]:
    """Validate a name -> non-negative finite number mapping (timings, counts)."""
    out: dict[str, int | float] = {}
    for name, value in values.items():
        number = _real_number(value)
        if not isinstance(name, str) or number is None:
            raise ValueError(f"{what} must map names to numbers, got {name!r}: {value!r}")
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{what} {name!r} must be a finite number >= 0, got {value!r}")
        out[name] = number
    return out


def _real_number(value: object) -> int | float | None:
    """A plain int or float for any real number (numpy scalars included); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)
