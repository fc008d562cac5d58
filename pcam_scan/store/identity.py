"""What makes two scans comparable: the model id and the resolved settings, hashed stably.

A store holds the results of exactly one run identity. The settings hash is the sha256 of the
settings' canonical JSON (sorted keys, no spaces, no NaN), so it does not depend on dict order,
the Python version or the machine, and it can be recomputed from the settings stored beside it.
Package versions are recorded with every store but are not part of the identity: upgrading numpy
must not refuse a resume.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata

from pcam_scan.errors import ConfigError

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$")

# Distributions whose versions are recorded with each store (absent ones are left out).
RECORDED_PACKAGES: tuple[str, ...] = (
    "pcam-scan",
    "numpy",
    "zarr",
    "torch",
    "torchvision",
    "openslide-python",
    "openslide-bin",
    "tiffslide",
    "ray",
)


def canonical_json(value: object) -> str:
    """One JSON text per value: sorted keys, compact, ASCII, no NaN/Infinity."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"value is not plain JSON data: {err}") from err


def json_copy(value: object) -> object:
    """A deep copy through canonical JSON: proves the value can live in Zarr attributes."""
    return json.loads(canonical_json(value))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ModelCalibration:
    """The model's calibration as a store records it: the temperature (None: not calibrated) and
    what it was fitted on, in words (`Calibration.fitted_on`). Recorded beside the identity, not
    in it: the temperature alone is in the settings hash."""

    temperature: float | None
    fitted_on: str | None = None


@dataclass(frozen=True, eq=False)
class RunIdentity:
    """The model (sha256 of its weights) and the resolved settings of one scan run.

    `settings` is kept as a private JSON copy of what was passed, so later changes to the
    caller's dict cannot change the identity. Two identities are equal when their model ids and
    settings hashes are equal.
    """

    model_id: str
    settings: Mapping[str, object]
    settings_hash: str = field(init=False)
    calibration: ModelCalibration | None = None
    """The model's calibration for the store's record (None: not known, nothing recorded); like
    the package versions, not part of the identity."""

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not MODEL_ID_RE.match(self.model_id):
            raise ConfigError(
                f"model id {self.model_id!r} is not a plain id (letters, digits, ':._-', at most 200 characters)"
            )
        if not isinstance(self.settings, Mapping):
            raise ConfigError("run settings must be a mapping of names to JSON values")
        if not all(isinstance(key, str) for key in self.settings):
            raise ConfigError("run settings names must be strings")
        canonical = canonical_json(dict(self.settings))
        object.__setattr__(self, "settings", json.loads(canonical))
        object.__setattr__(self, "settings_hash", f"sha256:{sha256_hex(canonical)}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunIdentity):
            return NotImplemented
        return (self.model_id, self.settings_hash) == (other.model_id, other.settings_hash)

    def __hash__(self) -> int:
        return hash((self.model_id, self.settings_hash))


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a heatmap, for the record."""
    versions: dict[str, str] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
