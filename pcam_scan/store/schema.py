"""The store's attribute schema: what the root, each slide group and `prob` record, as JSON.

Everything pcam-scan writes lives under one namespace key, `pcam_scan`, in the group attributes
(the OME-NGFF metadata of `prob` lives under `ome`, as that spec asks). `ATTRIBUTES` declares
every attribute and every field of a compound one: where it lives, its JSON type, its meaning and
the store format version that introduced it; docs/store.md lists the same table.

This is the only module that spells the attribute keys. The rest of the code reads and writes
typed records: `RootAttrs`, `SlideAttrs` (a read view of a slide's attributes), `SlideRecord`,
`SlideStatus`, `PyramidRecord`, `StoredSlide`, and the update builders (`planned_attrs`,
`completed_attrs`, `failed_attrs`, ...). Reading goes through them, so a missing or malformed
field becomes a StoreError naming the field. The OME-NGFF fields inside `ome` are that standard's
spelling and stay in `ngff.py`.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid, PatchGeometry, check_label_rule
from pcam_scan.store.identity import ModelCalibration, RunIdentity, package_versions

FORMAT_NAME = "pcam-scan-heatmaps"
FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
"""Version 2 added run records (`runs/`), QC (`qc_flags`, `focus`, the slide attribute
`quality_control`) and each slide's `slide.backend`; a version-1 store opens (and resumes), its
history empty, its slides without QC and with no backend recorded. Version 3 added the root's
`model_calibration` (what the model's temperature was fitted on); an older store opens and says
it was not recorded."""
ATTRS_KEY = "pcam_scan"
RUNS_PREFIX = "runs"
"""Run records live as `runs/<started>-<written ns>-<host>-<pid>-<token>.json`, one JSON document per run,
plain objects beside the Zarr nodes (no `zarr.json`, so they are not a slide)."""

# Arrays of a slide group; `prob`, `qc_flags` and `focus` are groups whose levels are "0", "1", ...
PROB = "prob"
TISSUE = "tissue"
BLOCKS_DONE = "blocks_done"
QC_FLAGS = "qc_flags"
"""uint8 bit flags per cell (pcam_scan.qc.flags: 1 ink, 2 blur, 4 fold, 8 bubble, 16 ink nearby), since version 2."""
FOCUS = "focus"
"""float32 focus score per cell (NaN off tissue), since version 2."""


class Node(enum.StrEnum):
    """Where an attribute lives: the root group, a slide group, or a slide's `prob` group."""

    ROOT = "root"
    SLIDE = "slide group"
    PROB = "prob group"
    RUN = "run record"


@dataclass(frozen=True)
class AttrSpec:
    """One attribute (or one field of a compound attribute, `parent` set) of the store format."""

    node: Node
    key: str
    type: str
    meaning: str
    since_version: int = 1
    parent: AttrSpec | None = None

    @property
    def path(self) -> str:
        """`grid.geometry.patch_px`: the key with the keys of the attributes it sits in."""
        return self.key if self.parent is None else f"{self.parent.path}.{self.key}"


def _field(parent: AttrSpec, key: str, type_: str, meaning: str, since_version: int = 1) -> AttrSpec:
    return AttrSpec(parent.node, key, type_, meaning, since_version, parent)


# -- the table ---------------------------------------------------------------------------------

R_FORMAT = AttrSpec(Node.ROOT, "format", "string", f'`"{FORMAT_NAME}"`: what the store is')
R_FORMAT_VERSION = AttrSpec(
    Node.ROOT,
    "format_version",
    "integer",
    f"`{FORMAT_VERSION}` (`1` before run records, QC and `slide.backend`, `2` before `model_calibration`: "
    "both still read); any other version is refused",
)
R_MODEL_ID = AttrSpec(Node.ROOT, "model_id", "string", "the model's id (sha256 of its weights)")
R_SETTINGS_HASH = AttrSpec(
    Node.ROOT,
    "settings_hash",
    "string",
    "`sha256:` + sha256 of the settings' canonical JSON (sorted keys, compact)",
)
R_SETTINGS = AttrSpec(
    Node.ROOT, "settings", "object", "the resolved settings themselves (the hash can be recomputed from them)"
)
R_CALIBRATION = AttrSpec(
    Node.ROOT,
    "model_calibration",
    "object or null",
    "the model's calibration when the store was created: null, not calibrated; absent, not recorded "
    "(a store before version 3)",
    since_version=3,
)
R_CALIBRATION_TEMPERATURE = _field(
    R_CALIBRATION, "temperature", "number", "the checkpoint's temperature (also in `settings`)", 3
)
R_CALIBRATION_FITTED_ON = _field(
    R_CALIBRATION,
    "fitted_on",
    "string or null",
    "what it was fitted on, in words: the labelled patches, how many, their NLL before and after, the date",
    3,
)
R_VERSIONS = AttrSpec(
    Node.ROOT,
    "versions",
    "object (name: string)",
    "versions of pcam-scan, numpy, zarr, torch, openslide, ray when the store was created "
    "(recorded, not part of the identity)",
)

S_SLIDE = AttrSpec(Node.SLIDE, "slide", "object", "the slide file (`SlideRecord`)")
S_SLIDE_PATH = _field(S_SLIDE, "path", "string", "the slide file's path as given to the scan")
S_SLIDE_FINGERPRINT = _field(S_SLIDE, "fingerprint", "string", "its content fingerprint (see below)")
S_SLIDE_BACKEND = _field(
    S_SLIDE,
    "backend",
    "string",
    "the library that read its pixels at planning (`openslide`, `tiffslide`, `tiffslide+openslide`, "
    "`dicom` or `wsidicom`; `--slide-backend`); "
    "absent in version-1 stores",
    since_version=2,
)
S_MODEL_ID = AttrSpec(Node.SLIDE, "model_id", "string", "the model id the slide was scanned with")
S_SETTINGS_HASH = AttrSpec(Node.SLIDE, "settings_hash", "string", "the settings hash it was scanned with")
S_GRID = AttrSpec(Node.SLIDE, "grid", "object", "the cell grid of the heatmap (`CellGrid`); present once planned")
S_GRID_L0_WIDTH = _field(S_GRID, "l0_width", "integer", "slide width at level 0, px")
S_GRID_L0_HEIGHT = _field(S_GRID, "l0_height", "integer", "slide height at level 0, px")
S_GRID_SLIDE_MPP = _field(S_GRID, "slide_mpp_um_px", "number", "the slide's level-0 um/px")
S_GRID_PX_MPP = _field(S_GRID, "px_mpp_um_px", "number", "um/px of the read plane the patches are cut from")
S_GRID_GEOMETRY = _field(S_GRID, "geometry", "object", "the model's patch geometry (`PatchGeometry`)")
S_GEOMETRY_PATCH_PX = _field(S_GRID_GEOMETRY, "patch_px", "integer", "patch side, read-plane px")
S_GEOMETRY_LABEL_PX = _field(S_GRID_GEOMETRY, "label_px", "integer", "side of the labelled centre, px")
S_GEOMETRY_MPP = _field(S_GRID_GEOMETRY, "mpp_um_px", "number", "the model's um/px")
S_GEOMETRY_STRIDE_PX = _field(S_GRID_GEOMETRY, "stride_px", "integer", "patch stride = cell side, px")
S_GEOMETRY_LABEL_RULE = _field(
    S_GRID_GEOMETRY,
    "label_rule",
    "string",
    "how a patch label was defined (absent in early version-1 stores: `pcam-any`)",
)
S_GRID_ROWS = _field(S_GRID, "rows", "integer", "cell rows (derived, for readers without pcam_scan)")
S_GRID_COLS = _field(S_GRID, "cols", "integer", "cell columns (derived)")
S_GRID_CELL_UM = _field(S_GRID, "cell_um", "number", "cell side in um (derived)")
S_BLOCK_CELLS = AttrSpec(Node.SLIDE, "block_cells", "integer", "block side in cells (one chunk of `prob/0`)")
S_BLOCK_GRID = AttrSpec(Node.SLIDE, "block_grid", "[integer, integer]", "blocks per column and per row")
S_PLANNED_BLOCKS = AttrSpec(Node.SLIDE, "planned_blocks", "integer", "blocks with tissue: the scan's work")
S_STATUS = AttrSpec(Node.SLIDE, "status", "object", "where the slide stands (`SlideStatus`); written last")
S_STATUS_STATE = _field(S_STATUS, "state", "string", "`planned`, `complete` or `failed`")
S_STATUS_MESSAGE = _field(S_STATUS, "message", "string or null", "why it failed (one line)")
S_COUNTS = AttrSpec(
    Node.SLIDE,
    "counts",
    "object (name: number)",
    "counts computed from the arrays (below) plus those the scanner adds (e.g. `blocks`)",
)
S_COUNTS_TISSUE_CELLS = _field(S_COUNTS, "tissue_cells", "integer", "cells with tissue")
S_COUNTS_PREDICTED_CELLS = _field(S_COUNTS, "predicted_cells", "integer", "cells with a probability")
S_COUNTS_TISSUE_MM2 = _field(S_COUNTS, "tissue_mm2", "number", "tissue area, mm2")
S_SECONDS = AttrSpec(
    Node.SLIDE, "seconds", "object (name: number)", "per-stage seconds given by the scanner (e.g. `read`, `predict`)"
)
S_PYRAMID = AttrSpec(Node.SLIDE, "pyramid", "object", "how the `prob` levels were built (`PyramidRecord`)")
S_PYRAMID_LEVELS = _field(S_PYRAMID, "levels", "integer", "number of `prob` levels")
S_PYRAMID_POOLING = _field(S_PYRAMID, "pooling", "string", "`max` or `mean` (2 x 2, NaN-aware)")
S_PYRAMID_TOP_CELLS = _field(S_PYRAMID, "top_cells", "integer", "the coarsest level's largest side is at most this")
S_DIAGNOSIS = AttrSpec(
    Node.SLIDE,
    "diagnosis",
    "object",
    "the slide-level diagnosis (`pcam_scan.diagnosis.Diagnosis.to_attrs`), added after the scan",
)

RUN_COMPLETED_OUTCOME = "completed"
RUN_OUTCOMES = (RUN_COMPLETED_OUTCOME, "failed", "interrupted")
"""How a recorded run ended: it ran to its end, it raised an error, or it was interrupted."""

RUN_RECORD = AttrSpec(
    Node.RUN,
    "run_record",
    "object",
    "one command's run (`RunRecord`), the whole document of `runs/*.json` (format version 2)",
    since_version=2,
)
RUN_COMMAND = _field(RUN_RECORD, "command", "string", "`scan`, `diagnose` or `evaluate`", 2)
RUN_ARGUMENTS = _field(RUN_RECORD, "arguments", "object", "the command's options as parsed (paths as text)", 2)
RUN_VERSIONS = _field(RUN_RECORD, "versions", "object (name: string)", "package versions of the run", 2)
RUN_HOST = _field(RUN_RECORD, "host", "string", "the host that ran it", 2)
RUN_USER = _field(RUN_RECORD, "user", "string", "the user that ran it", 2)
RUN_PID = _field(RUN_RECORD, "pid", "integer", "its process id", 2)
RUN_STARTED = _field(RUN_RECORD, "started", "string", "UTC ISO 8601 start", 2)
RUN_ENDED = _field(RUN_RECORD, "ended", "string", "UTC ISO 8601 end", 2)
RUN_EXIT = _field(
    RUN_RECORD,
    "exit_code",
    "integer",
    (
        "the command's exit code (0 all slides done, 1 some not; a run that raised: 2 an error, 130 interrupted, "
        "143 SIGTERM)"
    ),
    2,
)
RUN_SLIDES = _field(RUN_RECORD, "slides", "object", "counts: `attempted`, `completed`, `failed`", 2)
RUN_ATTEMPTED = _field(RUN_SLIDES, "attempted", "integer", "slides the run tried", 2)
RUN_COMPLETED = _field(RUN_SLIDES, "completed", "integer", "slides it finished", 2)
RUN_FAILED = _field(RUN_SLIDES, "failed", "integer", "slides it could not finish", 2)
RUN_ATTEMPTS = _field(RUN_RECORD, "attempts", "[object]", "per slide: `slide`, `state`, `message`", 2)
RUN_ATTEMPT_SLIDE = _field(RUN_ATTEMPTS, "slide", "string", "the slide id", 2)
RUN_ATTEMPT_STATE = _field(RUN_ATTEMPTS, "state", "string", "what the run did with it (e.g. `complete`, `failed`)", 2)
RUN_ATTEMPT_MESSAGE = _field(RUN_ATTEMPTS, "message", "string", "why, in one line ('' when done)", 2)
RUN_OUTCOME = _field(
    RUN_RECORD,
    "outcome",
    "string",
    "`completed` (the command ran to its end), `failed` (it raised: its error) or `interrupted` "
    "(Ctrl-C or SIGTERM); absent in the first version-2 records: `completed`",
    2,
)
RUN_MESSAGE = _field(RUN_RECORD, "message", "string", "why a run did not complete, in one line ('' when it did)", 2)

S_QC = AttrSpec(
    Node.SLIDE,
    "quality_control",
    "object",
    "slide quality control (`pcam_scan.qc`); absent: QC was not run (a store before version 2, or `--no-qc`)",
    since_version=2,
)
S_QC_SETTINGS = _field(S_QC, "settings", "object (name: number)", "the QC thresholds (`QcSettings`), at planning", 2)
S_QC_VERDICT = _field(S_QC, "verdict", "string", "`pass`, `warn` or `not assessable`; written at finalize", 2)
S_QC_REASON = _field(S_QC, "reason", "string", "why the verdict is not `pass` (one line, empty for `pass`)", 2)
S_QC_SHARES = _field(
    S_QC, "shares", "object (name: number)", "share of tissue cells per reason (`ink`, `blur`, `fold`, `bubble`)", 2
)
S_QC_EXCLUDED_SHARE = _field(S_QC, "excluded_share", "number", "share of tissue cells excluded (ink, fold, bubble)", 2)
S_QC_FOCUS_REFERENCE = _field(
    S_QC, "focus_reference", "number or null", "the slide's in-focus reference focus score (blur is relative to it)", 2
)

P_OME = AttrSpec(
    Node.PROB,
    "ome",
    "object",
    "OME-NGFF 0.5 `multiscales` metadata (`ngff.py`), under its own key; the same on `qc_flags` (OR pooling) "
    "and `focus` (mean pooling) since version 2",
)

ATTRIBUTES: tuple[AttrSpec, ...] = tuple(value for value in list(globals().values()) if isinstance(value, AttrSpec))
"""Every attribute and field of the format, in declaration order (the table of docs/store.md)."""


def attributes_markdown() -> str:
    """`ATTRIBUTES` as the Markdown tables of docs/store.md, one per node."""
    lines: list[str] = []
    for node in Node:
        where = {Node.PROB: "`attributes`", Node.RUN: f"`{RUNS_PREFIX}/*.json`"}.get(
            node, f'`attributes["{ATTRS_KEY}"]`'
        )
        lines += ["", f"{node.value[0].upper()}{node.value[1:]}, {where}:", ""]
        lines += ["| key | type | since | meaning |", "|---|---|---|---|"]
        lines += [
            f"| `{spec.path}` | {spec.type} | {spec.since_version} | {spec.meaning} |"
            for spec in ATTRIBUTES
            if spec.node is node
        ]
    return "\n".join(lines[1:])


# -- records -----------------------------------------------------------------------------------


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
        return {S_STATUS_STATE.key: self.state.value, S_STATUS_MESSAGE.key: self.message}

    @classmethod
    def from_attrs(cls, raw: object) -> SlideStatus:
        state_key = S_STATUS_STATE.key
        if not isinstance(raw, Mapping) or state_key not in raw:
            raise StoreError(f"malformed slide status {raw!r}")
        try:
            state = SlideState(raw[state_key])
            if state is SlideState.DAMAGED:
                raise ValueError(state)
        except (ValueError, TypeError) as err:
            raise StoreError(f"unknown slide state {raw[state_key]!r}") from err
        message = raw.get(S_STATUS_MESSAGE.key)
        return cls(state, None if message is None else str(message))


@dataclass(frozen=True)
class SlideRecord:
    """Where a slide's heatmap came from: the file path as given, its content fingerprint, and
    the library that read it (None: not recorded, a version-1 store or a slide that never opened)."""

    path: str
    fingerprint: str
    backend: str | None = None

    def to_attrs(self) -> dict[str, object]:
        attrs: dict[str, object] = {S_SLIDE_PATH.key: self.path, S_SLIDE_FINGERPRINT.key: self.fingerprint}
        if self.backend is not None:
            attrs[S_SLIDE_BACKEND.key] = self.backend
        return attrs

    @classmethod
    def from_attrs(cls, raw: object) -> SlideRecord:
        if not isinstance(raw, Mapping):
            raise StoreError(f"malformed slide record {raw!r}")
        return cls(
            path=str(raw.get(S_SLIDE_PATH.key, "")),
            fingerprint=str(raw.get(S_SLIDE_FINGERPRINT.key, "")),
            backend=_optional_str(raw.get(S_SLIDE_BACKEND.key)),
        )


@dataclass(frozen=True)
class PyramidRecord:
    """How the `prob` pyramid of a finalized slide was built."""

    levels: int
    pooling: str
    top_cells: int

    def to_attrs(self) -> dict[str, object]:
        return {
            S_PYRAMID_LEVELS.key: self.levels,
            S_PYRAMID_POOLING.key: self.pooling,
            S_PYRAMID_TOP_CELLS.key: self.top_cells,
        }


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
    qc: Mapping[str, object] | None = None
    """The slide's QC record (`qc_record`); None when QC was not run."""

    @property
    def qc_verdict(self) -> str | None:
        """`pass`, `warn`, `not assessable`; None when QC was not run or not finished."""
        verdict = (self.qc or {}).get(S_QC_VERDICT.key)
        return None if verdict is None else str(verdict)

    @property
    def qc_reason(self) -> str:
        return str((self.qc or {}).get(S_QC_REASON.key) or "")

    @property
    def qc_shares(self) -> dict[str, float]:
        shares = (self.qc or {}).get(S_QC_SHARES.key)
        return {str(k): float(v) for k, v in shares.items()} if isinstance(shares, Mapping) else {}

    @property
    def qc_excluded_share(self) -> float | None:
        value = (self.qc or {}).get(S_QC_EXCLUDED_SHARE.key)
        return None if value is None else float(value)  # type: ignore[arg-type]

    @property
    def tissue_mm2(self) -> float | None:
        """The tissue area the store computed at finalize; None before."""
        value = self.counts.get(S_COUNTS_TISSUE_MM2.key)
        return None if value is None else float(value)

    @property
    def tissue_cells(self) -> int | None:
        """Cells with tissue, computed at finalize; None before."""
        value = self.counts.get(S_COUNTS_TISSUE_CELLS.key)
        return None if value is None else int(value)

    @property
    def predicted_cells(self) -> int | None:
        """Cells with a probability, computed at finalize; None before."""
        value = self.counts.get(S_COUNTS_PREDICTED_CELLS.key)
        return None if value is None else int(value)


def computed_counts(tissue_cells: int, predicted_cells: int, tissue_mm2: float) -> dict[str, int | float]:
    """The counts the store computes from a slide's arrays when it finalizes it."""
    return {
        S_COUNTS_TISSUE_CELLS.key: tissue_cells,
        S_COUNTS_PREDICTED_CELLS.key: predicted_cells,
        S_COUNTS_TISSUE_MM2.key: tissue_mm2,
    }


# -- the root ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootAttrs:
    """The root group's record: the format and the run identity the store holds."""

    format: object
    format_version: object
    model_id: object
    settings_hash: object
    settings: Mapping[str, object] = field(default_factory=dict)
    versions: Mapping[str, object] = field(default_factory=dict)
    calibration: ModelCalibration | None = None
    """None: not recorded (a store before version 3, or a run that did not say)."""

    @classmethod
    def for_run(cls, run: RunIdentity) -> RootAttrs:
        return cls(
            FORMAT_NAME,
            FORMAT_VERSION,
            run.model_id,
            run.settings_hash,
            dict(run.settings),
            package_versions(),
            run.calibration,
        )

    def to_attrs(self) -> dict[str, object]:
        """The group attributes: the record under the `pcam_scan` namespace."""
        ours: dict[str, object] = {
            R_FORMAT.key: self.format,
            R_FORMAT_VERSION.key: self.format_version,
            R_MODEL_ID.key: self.model_id,
            R_SETTINGS_HASH.key: self.settings_hash,
            R_SETTINGS.key: dict(self.settings),
            R_VERSIONS.key: dict(self.versions),
        }
        if self.calibration is not None:
            ours[R_CALIBRATION.key] = _calibration_to_attrs(self.calibration)
        return {ATTRS_KEY: ours}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> RootAttrs | None:
        """The record from the root group's attributes; None when they are not a pcam-scan store's."""
        ours = attrs.get(ATTRS_KEY)
        if not isinstance(ours, Mapping) or ours.get(R_FORMAT.key) != FORMAT_NAME:
            return None
        settings, versions = ours.get(R_SETTINGS.key), ours.get(R_VERSIONS.key)
        return cls(
            format=ours.get(R_FORMAT.key),
            format_version=ours.get(R_FORMAT_VERSION.key),
            model_id=ours.get(R_MODEL_ID.key),
            settings_hash=ours.get(R_SETTINGS_HASH.key),
            settings=dict(settings) if isinstance(settings, Mapping) else {},
            versions=dict(versions) if isinstance(versions, Mapping) else {},
            calibration=_calibration_from_attrs(ours),
        )


def _calibration_to_attrs(calibration: ModelCalibration) -> dict[str, object] | None:
    if calibration.temperature is None:
        return None
    return {R_CALIBRATION_TEMPERATURE.key: calibration.temperature, R_CALIBRATION_FITTED_ON.key: calibration.fitted_on}


def _calibration_from_attrs(ours: Mapping[str, Any]) -> ModelCalibration | None:
    """The recorded calibration; None when the store records none (or a malformed one: it is
    only shown, never used to compute)."""
    if R_CALIBRATION.key not in ours:
        return None
    raw = ours[R_CALIBRATION.key]
    if raw is None:
        return ModelCalibration(None)
    if not isinstance(raw, Mapping):
        return None
    temperature = _real_number(raw.get(R_CALIBRATION_TEMPERATURE.key))
    fitted_on = raw.get(R_CALIBRATION_FITTED_ON.key)
    if temperature is None:
        return None
    return ModelCalibration(float(temperature), fitted_on if isinstance(fitted_on, str) else None)


def root_format_version(attrs: Mapping[str, Any]) -> int:
    """The format version a store's root records (the current one when it records none)."""
    root = RootAttrs.from_attrs(attrs)
    version = FORMAT_VERSION if root is None else root.format_version
    return version if isinstance(version, int) else FORMAT_VERSION


def root_attrs(run: RunIdentity) -> dict[str, object]:
    """The root group's attributes of a new store for `run`."""
    return RootAttrs.for_run(run).to_attrs()


def check_root_attrs(uri: str, attrs: Mapping[str, Any], run: RunIdentity | None) -> None:
    """Refuse a store of another format, format version, model or settings."""
    root = RootAttrs.from_attrs(attrs)
    if root is None:
        raise StoreError(f"{uri} is a Zarr store but not a pcam-scan heatmap store")
    if root.format_version not in READABLE_FORMAT_VERSIONS:
        raise StoreError(
            f"{uri} has heatmap store format version {root.format_version!r}; "
            f"this pcam-scan reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
        )
    if run is None:
        return
    clashes = [
        f"{spec.key} {stored!r} in the store, {now!r} for this run"
        for spec, stored, now in (
            (R_MODEL_ID, root.model_id, run.model_id),
            (R_SETTINGS_HASH, root.settings_hash, run.settings_hash),
        )
        if stored != now
    ]
    if clashes:
        raise StoreError(
            f"{uri} holds results of another run ({'; '.join(clashes)}); "
            "use a new store, or the model and settings it was made with"
        )


# -- a slide group -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideAttrs:
    """A read view of a slide group's pcam-scan attributes; every accessor checks what it reads."""

    raw: Mapping[str, Any]

    @property
    def planned(self) -> bool:
        """Whether planning finished writing the grid (a group without it is planned again)."""
        return S_GRID.key in self.raw

    @property
    def has_status(self) -> bool:
        return S_STATUS.key in self.raw

    def status(self) -> SlideStatus | None:
        return SlideStatus.from_attrs(self.raw[S_STATUS.key]) if self.has_status else None

    def record(self) -> SlideRecord:
        return SlideRecord.from_attrs(self.raw.get(S_SLIDE.key, {}))

    def run_ids(self) -> tuple[object, object]:
        """(model id, settings hash) as stored, unchecked: for comparing with a run."""
        return (self.raw.get(S_MODEL_ID.key), self.raw.get(S_SETTINGS_HASH.key))

    def grid(self) -> CellGrid:
        return grid_from_attrs(self.raw.get(S_GRID.key))

    def block_cells(self) -> int:
        """The block side in cells; StoreError unless a positive integer (0 divided by zero in
        every command that reads the slide's blocks, and took the whole batch down)."""
        value = self.raw.get(S_BLOCK_CELLS.key)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise StoreError(f"its {S_BLOCK_CELLS.key} {value!r} is not a positive integer")
        return int(value)

    def planned_block_count(self) -> object:
        """The number of planned blocks as stored (for messages)."""
        return self.raw.get(S_PLANNED_BLOCKS.key)

    def stored_slide(self, slide_id: str) -> StoredSlide:
        """The slide's record; a malformed field raises StoreError (or TypeError) naming it."""
        raw = self.raw
        return StoredSlide(
            slide_id=slide_id,
            status=self.status(),
            record=self.record(),
            model_id=_optional_str(raw.get(S_MODEL_ID.key)),
            settings_hash=_optional_str(raw.get(S_SETTINGS_HASH.key)),
            counts=_numbers(raw, S_COUNTS),
            seconds=_numbers(raw, S_SECONDS),
            diagnosis=_optional_mapping(raw.get(S_DIAGNOSIS.key), S_DIAGNOSIS.key),
            qc=_optional_mapping(raw.get(S_QC.key), S_QC.key),
        )

    def qc_settings(self) -> Mapping[str, object] | None:
        """The QC thresholds recorded at planning; None when the slide was planned without QC."""
        qc = _optional_mapping(self.raw.get(S_QC.key), S_QC.key)
        return None if qc is None else require_mapping(qc.get(S_QC_SETTINGS.key, {}), S_QC_SETTINGS.path)


def planned_attrs(
    record: SlideRecord, run: RunIdentity, grid: CellGrid, block_cells: int, block_grid: tuple[int, int], n_blocks: int
) -> dict[str, object]:
    """The attributes planning writes (last, after the arrays): status `planned`."""
    return {
        S_SLIDE.key: record.to_attrs(),
        S_MODEL_ID.key: run.model_id,
        S_SETTINGS_HASH.key: run.settings_hash,
        S_GRID.key: grid_to_attrs(grid),
        S_BLOCK_CELLS.key: block_cells,
        S_BLOCK_GRID.key: list(block_grid),
        S_PLANNED_BLOCKS.key: n_blocks,
        S_STATUS.key: SlideStatus(SlideState.PLANNED).to_attrs(),
    }


def qc_planned_attrs(settings: Mapping[str, float]) -> dict[str, object]:
    """The QC record of a slide planned with QC: its thresholds (the verdict comes at finalize)."""
    return {S_QC.key: {S_QC_SETTINGS.key: dict(settings)}}


def qc_record(
    settings: Mapping[str, object],
    verdict: str,
    reason: str,
    shares: Mapping[str, float],
    excluded_share: float,
    focus_reference: float | None,
) -> dict[str, object]:
    """The QC record of a finalized slide (the attribute `qc`)."""
    return {
        S_QC.key: {
            S_QC_SETTINGS.key: dict(settings),
            S_QC_VERDICT.key: verdict,
            S_QC_REASON.key: reason,
            S_QC_SHARES.key: dict(shares),
            S_QC_EXCLUDED_SHARE.key: excluded_share,
            S_QC_FOCUS_REFERENCE.key: focus_reference,
        }
    }


def replanned_attrs(record: SlideRecord) -> dict[str, object]:
    """The update that resumes a slide planned before: its file record, status `planned`."""
    return {S_SLIDE.key: record.to_attrs(), S_STATUS.key: SlideStatus(SlideState.PLANNED).to_attrs()}


def completed_attrs(
    counts: Mapping[str, int | float], seconds: Mapping[str, float], pyramid: PyramidRecord
) -> dict[str, object]:
    """The final update of a finalized slide: counts, timings, pyramid and status `complete`."""
    return {
        S_COUNTS.key: dict(counts),
        S_SECONDS.key: dict(seconds),
        S_PYRAMID.key: pyramid.to_attrs(),
        S_STATUS.key: SlideStatus(SlideState.COMPLETE).to_attrs(),
    }


def failed_attrs(message: str, record: SlideRecord | None, run: RunIdentity | None) -> dict[str, object]:
    """Status `failed` with its message; the file record and run identity when given."""
    updates: dict[str, object] = {S_STATUS.key: SlideStatus(SlideState.FAILED, message).to_attrs()}
    if record is not None:
        updates[S_SLIDE.key] = record.to_attrs()
    if run is not None:
        updates.update({S_MODEL_ID.key: run.model_id, S_SETTINGS_HASH.key: run.settings_hash})
    return updates


def diagnosis_attrs(diagnosis: object) -> dict[str, object]:
    """The update that attaches (or replaces) a slide's diagnosis (plain JSON)."""
    return {S_DIAGNOSIS.key: diagnosis}


# -- the grid ----------------------------------------------------------------------------------


def grid_to_attrs(grid: CellGrid) -> dict[str, object]:
    g = grid.geometry
    return {
        S_GRID_L0_WIDTH.key: grid.l0_width,
        S_GRID_L0_HEIGHT.key: grid.l0_height,
        S_GRID_SLIDE_MPP.key: grid.slide_mpp_um_px,
        S_GRID_PX_MPP.key: grid.px_mpp_um_px,
        S_GRID_GEOMETRY.key: {
            S_GEOMETRY_PATCH_PX.key: g.patch_px,
            S_GEOMETRY_LABEL_PX.key: g.label_px,
            S_GEOMETRY_MPP.key: g.mpp_um_px,
            S_GEOMETRY_STRIDE_PX.key: g.stride_px,
            S_GEOMETRY_LABEL_RULE.key: g.label_rule,
        },
        # Derived, for readers that do not use pcam_scan:
        S_GRID_ROWS.key: grid.rows,
        S_GRID_COLS.key: grid.cols,
        S_GRID_CELL_UM.key: grid.cell_um,
    }


def grid_from_attrs(raw: object) -> CellGrid:
    try:
        grid = require_mapping(raw, S_GRID.path)
        geometry = require_mapping(grid[S_GRID_GEOMETRY.key], S_GRID_GEOMETRY.path)
        return CellGrid(
            l0_width=int(grid[S_GRID_L0_WIDTH.key]),
            l0_height=int(grid[S_GRID_L0_HEIGHT.key]),
            slide_mpp_um_px=float(grid[S_GRID_SLIDE_MPP.key]),
            px_mpp_um_px=float(grid[S_GRID_PX_MPP.key]),
            geometry=PatchGeometry(
                patch_px=int(geometry[S_GEOMETRY_PATCH_PX.key]),
                label_px=int(geometry[S_GEOMETRY_LABEL_PX.key]),
                mpp_um_px=float(geometry[S_GEOMETRY_MPP.key]),
                stride_px=int(geometry[S_GEOMETRY_STRIDE_PX.key]),
                # stores written before the rule was recorded hold PCam-rule heatmaps
                label_rule=check_label_rule(geometry.get(S_GEOMETRY_LABEL_RULE.key, "pcam-any")),
            ),
        )
    except (KeyError, TypeError, ValueError, OverflowError, ConfigError) as err:
        raise StoreError(f"malformed grid attributes ({type(err).__name__}: {err})") from err


# -- checks ------------------------------------------------------------------------------------


def require_mapping(raw: object, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise StoreError(f"malformed {what} attributes: expected a mapping, got {raw!r}")
    return raw


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


def _numbers(raw: Mapping[str, Any], spec: AttrSpec) -> dict[str, int | float]:
    return finite_numbers(require_mapping(raw.get(spec.key, {}), spec.key), spec.key)


def _real_number(value: object) -> int | float | None:
    """A plain int or float for any real number (numpy scalars included); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _optional_str(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}"[:120])
    return value


def _optional_mapping(value: object, what: str) -> Mapping[str, object] | None:
    return None if value is None else require_mapping(value, what)


# -- run records -------------------------------------------------------------------------------


DONE_STATES = frozenset({"complete", "already complete", "diagnosed", "evaluated", "staged"})
"""The states a run record counts as completed; anything else (failed, damaged, planned...) failed."""


@dataclass(frozen=True)
class SlideAttempt:
    """What one run did with one slide."""

    slide_id: str
    state: str
    message: str = ""


@dataclass(frozen=True)
class RunRecord:
    """One command's run over a store (TRIDENT's run manifest and WSInfer's run metadata are the
    anchors: what ran, with which versions, where, when, and what became of each slide)."""

    command: str
    arguments: Mapping[str, object]
    versions: Mapping[str, str]
    host: str
    user: str
    pid: int
    started: str
    ended: str
    exit_code: int
    attempts: tuple[SlideAttempt, ...]
    outcome: str = RUN_COMPLETED_OUTCOME
    """`RUN_OUTCOMES`: whether the command ran to its end; a scan that stopped early still lists
    its slides, each completed, failed or unfinished."""
    message: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in RUN_OUTCOMES:
            raise StoreError(f"run outcome {self.outcome!r} is not one of {', '.join(RUN_OUTCOMES)}")

    @property
    def failed(self) -> int:
        """Slides the run did not finish (any state but a done one)."""
        return sum(1 for a in self.attempts if a.state not in DONE_STATES)

    def to_json(self) -> dict[str, object]:
        attempted = len(self.attempts)
        return {
            RUN_RECORD.key: {
                RUN_COMMAND.key: self.command,
                RUN_ARGUMENTS.key: dict(self.arguments),
                RUN_VERSIONS.key: dict(self.versions),
                RUN_HOST.key: self.host,
                RUN_USER.key: self.user,
                RUN_PID.key: self.pid,
                RUN_STARTED.key: self.started,
                RUN_ENDED.key: self.ended,
                RUN_EXIT.key: self.exit_code,
                RUN_OUTCOME.key: self.outcome,
                RUN_MESSAGE.key: self.message,
                RUN_SLIDES.key: {
                    RUN_ATTEMPTED.key: attempted,
                    RUN_COMPLETED.key: attempted - self.failed,
                    RUN_FAILED.key: self.failed,
                },
                RUN_ATTEMPTS.key: [
                    {
                        RUN_ATTEMPT_SLIDE.key: a.slide_id,
                        RUN_ATTEMPT_STATE.key: a.state,
                        RUN_ATTEMPT_MESSAGE.key: a.message,
                    }
                    for a in self.attempts
                ],
            }
        }

    @classmethod
    def from_json(cls, doc: object) -> RunRecord:
        """The record from its document; a malformed one raises StoreError naming the field."""
        raw = doc.get(RUN_RECORD.key) if isinstance(doc, Mapping) else None
        if not isinstance(raw, Mapping):
            raise StoreError(f"not a run record (no `{RUN_RECORD.key}` object)")
        try:
            attempts = tuple(
                SlideAttempt(
                    str(a[RUN_ATTEMPT_SLIDE.key]),
                    str(a[RUN_ATTEMPT_STATE.key]),
                    str(a.get(RUN_ATTEMPT_MESSAGE.key, "")),
                )
                for a in raw.get(RUN_ATTEMPTS.key, [])
            )
            arguments, versions = raw.get(RUN_ARGUMENTS.key, {}), raw.get(RUN_VERSIONS.key, {})
            return cls(
                command=str(raw[RUN_COMMAND.key]),
                arguments=dict(arguments) if isinstance(arguments, Mapping) else {},
                versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, Mapping) else {},
                host=str(raw.get(RUN_HOST.key, "")),
                user=str(raw.get(RUN_USER.key, "")),
                pid=int(raw.get(RUN_PID.key, 0)),
                started=str(raw[RUN_STARTED.key]),
                ended=str(raw[RUN_ENDED.key]),
                exit_code=int(raw.get(RUN_EXIT.key, 0)),
                attempts=attempts,
                outcome=str(raw.get(RUN_OUTCOME.key, RUN_COMPLETED_OUTCOME)),
                message=str(raw.get(RUN_MESSAGE.key, "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise StoreError(f"malformed run record: {type(err).__name__}: {err}") from None
