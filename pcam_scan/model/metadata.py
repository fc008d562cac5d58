"""What a checkpoint says about its model: architecture, classes, geometry, normalisation, provenance.

safetensors metadata is a flat dict[str, str]; the scanner keeps one JSON document under the key
`pcam_scan` (see `checkpoint.METADATA_KEY`), versioned by `format_version`:

    {"format_version": 1, "architecture": "resnet50-fastai-head",
     "classes": ["normal", "tumour"], "tumour_index": 1,
     "input_px": 96, "patch_px": 96, "label_px": 32, "mpp_um_px": 0.972,
     "label_rule": "pcam-any",
     "normalisation": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
     "provenance": {"data": "...", "date": "2024-05-01T12:00:00+00:00",
                    "metrics": {"valid_auc": 0.96}, "details": {"recipe": "..."}},
     "calibration": {"temperature": 1.8, "data": "...", "date": "...",
                     "nll_before": 0.52, "nll_after": 0.31}}

`patch_px`, `label_px` and `mpp_um_px` describe the patches the model was trained on (what the
slide reader must cut); `label_rule` says how the label was defined from the centre `label_px`
square ("pcam-any": any tumour pixel, PatchCamelyon's rule and what a document without the field
means; "centre-majority": tumour over half of it), which lesion geometry needs; `input_px` is
what the network sees (the predictor resizes patch_px to input_px on the device: 96 native, 224
for the original fastai recipe). `calibration` is optional (issue 22): a temperature the scorer
divides the logits by, and what it was fitted on (which patches, how many; the NLL of those patches
before and after, optional: checkpoints calibrated before they were recorded lack them); without
it the model is uncalibrated and scores as before. Mean and std apply to pixels scaled to [0, 1]. Every field is
checked; an unknown or missing field is refused, so a typo never passes silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pcam_scan.bounded_json import JsonLimitError, parse_json
from pcam_scan.defaults import TEMPERATURE_RANGE
from pcam_scan.errors import CheckpointError, ConfigError
from pcam_scan.geometry import (
    PCAM_LABEL_PX,
    PCAM_MPP_UM_PX,
    PCAM_PATCH_PX,
    LabelRule,
    PatchGeometry,
    check_label_rule,
)
from pcam_scan.model.architectures import ARCHITECTURES
from pcam_scan.wording import calibration_wording, count_noun

FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT_PX = 16
MAX_INPUT_PX = 1024

_TOP_FIELDS = frozenset(
    {
        "format_version",
        "architecture",
        "classes",
        "tumour_index",
        "input_px",
        "patch_px",
        "label_px",
        "label_rule",
        "mpp_um_px",
        "normalisation",
        "provenance",
        "calibration",
    }
)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel (R, G, B) mean and std of pixels scaled to [0, 1]."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise CheckpointError("normalisation mean and std need 3 values (R, G, B) each")
        if not all(math.isfinite(m) and 0.0 <= m <= 1.0 for m in self.mean):
            raise CheckpointError(f"normalisation mean {list(self.mean)} must lie in [0, 1]")
        if not all(math.isfinite(s) and 0.0 < s <= 1.0 for s in self.std):
            raise CheckpointError(f"normalisation std {list(self.std)} must lie in (0, 1]")


@dataclass(frozen=True)
class Provenance:
    """Where the weights come from: training data, ISO 8601 date, metrics, free-form details."""

    data: str
    date: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data.strip():
            raise CheckpointError("provenance.data must say what the model was trained on")
        try:
            datetime.fromisoformat(self.date)
        except ValueError:
            raise CheckpointError(f"provenance.date {self.date!r} is not an ISO 8601 date") from None
        for name, value in self.metrics.items():
            if not math.isfinite(value):
                raise CheckpointError(f"provenance metric {name!r} is not finite")
        # private copies (plain dicts, so the metadata pickles for Ray workers)
        object.__setattr__(self, "metrics", {k: float(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "details", {k: str(v) for k, v in self.details.items()})

    @classmethod
    def imported(cls, data: str, tool: str, source_name: str, source_sha256: str, **details: str) -> Provenance:
        """Weights converted from another tool today: the tool, the source file's name and
        sha256 in `details` (`imported_from`, `source`, `source_sha256`), with any other details."""
        return cls(
            data=data,
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            details={"imported_from": tool, "source": source_name, "source_sha256": source_sha256, **details},
        )


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling: the scorer divides the logits by `temperature` before the softmax
    (Guo et al. 2017); `data` says which labelled patches it was fitted on, `date` when, and the
    NLL of those patches before and after (None: not recorded, an older checkpoint)."""

    temperature: float
    data: str
    date: str
    nll_before: float | None = None
    nll_after: float | None = None

    def __post_init__(self) -> None:
        low, high = TEMPERATURE_RANGE
        if not (math.isfinite(self.temperature) and low <= self.temperature <= high):
            raise CheckpointError(f"calibration temperature {self.temperature} must lie in [{low}, {high}]")
        if not self.data.strip():
            raise CheckpointError("calibration.data must say which patches the temperature was fitted on")
        try:
            datetime.fromisoformat(self.date)
        except ValueError:
            raise CheckpointError(f"calibration.date {self.date!r} is not an ISO 8601 date") from None
        for name in ("nll_before", "nll_after"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise CheckpointError(f"calibration.{name} {value} must be a finite number >= 0")

    def fitted_on(self) -> str:
        """What the temperature was fitted on, in words: the patches, their NLL before and after
        (when recorded), the date. What `model-info`, a store and the diagnosis card show."""
        nll = ""
        if self.nll_before is not None and self.nll_after is not None:
            nll = f", NLL {self.nll_before:.4f} -> {self.nll_after:.4f}"
        return f"{self.data}{nll}, {self.date}"

    def describe(self) -> str:
        return calibration_wording(self.temperature, self.fitted_on())


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the scanner needs to know about a model besides its weights."""

    architecture: str
    provenance: Provenance
    classes: tuple[str, ...] = ("normal", "tumour")
    tumour_index: int = 1
    input_px: int = PCAM_PATCH_PX
    patch_px: int = PCAM_PATCH_PX
    label_px: int = PCAM_LABEL_PX
    mpp_um_px: float = PCAM_MPP_UM_PX
    normalisation: Normalisation = Normalisation()
    label_rule: LabelRule = "pcam-any"
    calibration: Calibration | None = None
    """None: uncalibrated, the softmax of the raw logits (every checkpoint before issue 22)."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            known = ", ".join(sorted(ARCHITECTURES))
            raise CheckpointError(f"unknown architecture {self.architecture!r} (known: {known})")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise CheckpointError(f"classes {list(self.classes)} must be 2 or more distinct names")
        if not 0 <= self.tumour_index < len(self.classes):
            raise CheckpointError(
                f"tumour_index {self.tumour_index} is out of range for {count_noun(len(self.classes), 'classe')}"
            )
        if not MIN_INPUT_PX <= self.input_px <= MAX_INPUT_PX:
            raise CheckpointError(f"input_px {self.input_px} is outside {MIN_INPUT_PX}..{MAX_INPUT_PX}")
        try:
            self.geometry()
        except ConfigError as err:
            raise CheckpointError(f"inconsistent patch geometry: {err}") from None

    @property
    def temperature(self) -> float | None:
        """The calibration temperature, None when the model is not calibrated."""
        return None if self.calibration is None else self.calibration.temperature

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def tumour_class(self) -> str:
        return self.classes[self.tumour_index]

    def geometry(self) -> PatchGeometry:
        """The patch geometry the model was trained on, one cell per label square; a scan sets
        its own stride once, in `pcam_scan.scan.settings.ScanRun.resolve`."""
        return PatchGeometry(
            patch_px=self.patch_px,
            label_px=self.label_px,
            mpp_um_px=self.mpp_um_px,
            stride_px=self.label_px,
            label_rule=self.label_rule,
        )

    def to_dict(self) -> dict[str, Any]:
        doc = self._base_dict()
        if self.calibration is not None:  # absent, the document is what older versions wrote
            cal = self.calibration
            doc["calibration"] = {"temperature": cal.temperature, "data": cal.data, "date": cal.date}
            doc["calibration"].update(
                {
                    name: value
                    for name, value in (("nll_before", cal.nll_before), ("nll_after", cal.nll_after))
                    if value is not None
                }
            )
        return doc

    def _base_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "classes": list(self.classes),
            "tumour_index": self.tumour_index,
            "input_px": self.input_px,
            "patch_px": self.patch_px,
            "label_px": self.label_px,
            "label_rule": self.label_rule,
            "mpp_um_px": self.mpp_um_px,
            "normalisation": {"mean": list(self.normalisation.mean), "std": list(self.normalisation.std)},
            "provenance": {
                "data": self.provenance.data,
                "date": self.provenance.date,
                "metrics": dict(self.provenance.metrics),
                "details": dict(self.provenance.details),
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse and check the JSON document; any problem is one CheckpointError line."""
        try:
            doc = parse_json(text)
        except JsonLimitError as err:
            raise CheckpointError(f"checkpoint metadata: {err}") from None
        return cls.from_dict(_mapping(doc, "metadata"))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ModelMetadata:
        version = _get(doc, "format_version", int)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format_version {version} is not supported (this pcam-scan reads {FORMAT_VERSION})"
            )
        _no_unknown(doc, _TOP_FIELDS, "metadata")
        norm = _mapping(_get(doc, "normalisation", dict), "normalisation")
        _no_unknown(norm, frozenset({"mean", "std"}), "normalisation")
        prov = _mapping(_get(doc, "provenance", dict), "provenance")
        _no_unknown(prov, frozenset({"data", "date", "metrics", "details"}), "provenance")
        return cls(
            architecture=_get(doc, "architecture", str),
            classes=tuple(_list_of(doc, "classes", str)),
            tumour_index=_get(doc, "tumour_index", int),
            input_px=_get(doc, "input_px", int),
            patch_px=_get(doc, "patch_px", int),
            label_px=_get(doc, "label_px", int),
            mpp_um_px=float(_get(doc, "mpp_um_px", float)),
            label_rule=_label_rule(doc),
            normalisation=Normalisation(
                mean=_triple(norm, "mean"),
                std=_triple(norm, "std"),
            ),
            provenance=Provenance(
                data=_get(prov, "data", str),
                date=_get(prov, "date", str),
                metrics={k: float(v) for k, v in _map_of(prov, "metrics", float).items()},
                details=_map_of(prov, "details", str),
            ),
            calibration=_calibration(doc),
        )


def _calibration(doc: Mapping[str, Any]) -> Calibration | None:
    """The document's temperature scaling; a checkpoint without one is uncalibrated."""
    if "calibration" not in doc:
        return None
    cal = _mapping(doc["calibration"], "calibration")
    _no_unknown(cal, frozenset({"temperature", "data", "date", "nll_before", "nll_after"}), "calibration")
    return Calibration(
        temperature=float(_get(cal, "temperature", float)),
        data=_get(cal, "data", str),
        date=_get(cal, "date", str),
        nll_before=float(_get(cal, "nll_before", float)) if "nll_before" in cal else None,
        nll_after=float(_get(cal, "nll_after", float)) if "nll_after" in cal else None,
    )


def _label_rule(doc: Mapping[str, Any]) -> LabelRule:
    """The document's label rule; older checkpoints without one mean PCam's rule."""
    if "label_rule" not in doc:
        return "pcam-any"
    try:
        return check_label_rule(doc["label_rule"])
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def _check(value: Any, kind: type, name: str) -> Any:
    """`value` if it is of `kind` (an int counts as a float, a bool never as a number)."""
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise CheckpointError(f"checkpoint metadata field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _get(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    if name not in doc:
        raise CheckpointError(f"checkpoint metadata lacks the field {name!r}")
    return _check(doc[name], kind, name)


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    return _check(value, dict, name)  # type: ignore[no-any-return]


def _list_of(doc: Mapping[str, Any], name: str, kind: type) -> list[Any]:
    values = _get(doc, name, list)
    return [_check(v, kind, name) for v in values]


def _map_of(doc: Mapping[str, Any], name: str, kind: type) -> dict[str, Any]:
    values = _mapping(_get(doc, name, dict), name)
    return {k: _check(v, kind, f"{name}.{k}") for k, v in values.items()}


def _triple(doc: Mapping[str, Any], name: str) -> tuple[float, float, float]:
    values = [float(v) for v in _list_of(doc, name, float)]
    if len(values) != 3:
        raise CheckpointError(f"normalisation {name} needs 3 values (R, G, B), got {len(values)}")
    return (values[0], values[1], values[2])


def _no_unknown(doc: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(doc) - known)
    if unknown:
        raise CheckpointError(f"unknown {where} field(s) in checkpoint: {', '.join(unknown)}")
