"""Which annotation groups (ASAP `PartOfGroup`, QuPath classification) mean tumour or exclusion.

Camelyon16 ASAP files use `_0`, `_1` (tumour) and `_2` (exclusion: non-tumour inside a lesion),
or a `Tumor` group; derived copies rename them (`metastasis`, `negative`). Anything else (e.g. a
`tissue` outline, QuPath `artifact`) is ignored unless the caller maps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pcam_scan.annotations.model import Role
from pcam_scan.errors import ConfigError

# QuPath's name for an object without a classification (a GeoJSON feature with none).
UNCLASSIFIED = "Unclassified"


def _folded(names: frozenset[str]) -> frozenset[str]:
    return frozenset(name.strip().casefold() for name in names)


@dataclass(frozen=True)
class AnnotationGroups:
    """Case-insensitive group names per role, and the names writers give each role.

    A writer keeps a polygon's own group when it maps to the polygon's role here (so a file
    round-trips unchanged), and otherwise writes the format's canonical name.
    """

    tumour: frozenset[str] = field(
        default_factory=lambda: frozenset({"_0", "_1", "Tumor", "Tumour", "metastasis", "metastases"})
    )
    exclusion: frozenset[str] = field(default_factory=lambda: frozenset({"_2", "Exclusion", "negative", "normal"}))

    def __post_init__(self) -> None:
        for role_name in ("tumour", "exclusion"):
            names = getattr(self, role_name)
            if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names):
                raise ConfigError(f"annotation groups: {role_name} must be a set of non-empty names")
            object.__setattr__(self, role_name, _folded(frozenset(names)))
        both = self.tumour & self.exclusion
        if both:
            raise ConfigError(f"annotation groups {sorted(both)} are both tumour and exclusion")

    def role(self, group: str) -> Role | None:
        """`"tumour"`, `"exclusion"`, or None for a group to ignore."""
        folded = group.strip().casefold()
        if folded in self.tumour:
            return "tumour"
        if folded in self.exclusion:
            return "exclusion"
        return None

    def with_tumour(self, *groups: str) -> AnnotationGroups:
        """A copy that also reads `groups` as tumour (e.g. `"Unclassified"` for plain GeoJSON)."""
        return replace(self, tumour=self.tumour | frozenset(groups))

    def with_exclusion(self, *groups: str) -> AnnotationGroups:
        """A copy that also reads `groups` as exclusion."""
        return replace(self, exclusion=self.exclusion | frozenset(groups))

    def group_to_write(self, group: str, role: Role, canonical: tuple[str, str]) -> str:
        """The polygon's own group if it reads back as `role`, else `canonical[role]`
        (`canonical` = (tumour name, exclusion name) of the format)."""
        if self.role(group) == role:
            return group
        return canonical[0] if role == "tumour" else canonical[1]


DEFAULT_GROUPS = AnnotationGroups()
