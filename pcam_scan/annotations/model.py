"""The in-memory form of a slide's annotations, whatever file format they came from.

Coordinates are level-0 pixels (`l0_xy`), as in Camelyon16's ASAP files. A ring is stored open
(no repeated closing vertex); writers close it where the format wants that (GeoJSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pcam_scan.errors import AnnotationError
from pcam_scan.wording import count_noun

MIN_POLYGON_VERTICES = 3
# No slide is 10 million px a side; a coordinate of 1e300 would overflow int64 in rasterisation
# and silently empty the mask, so it is refused here.
MAX_ABS_L0_PX = 10_000_000

Role = Literal["tumour", "exclusion"]


@dataclass(frozen=True)
class Polygon:
    """One closed polygon: `l0_xy` is an (N, 2) float64 array of level-0 x, y vertices.

    The array is copied, made read-only and checked (N >= 3, finite), so a bad vertex list fails
    here with its name rather than later as a wrong mask.
    """

    name: str
    group: str
    l0_xy: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        try:
            l0_xy = np.array(self.l0_xy, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise AnnotationError(f"polygon {self.name!r}: vertices are not numbers ({err})") from None
        if l0_xy.ndim != 2 or l0_xy.shape[1] != 2:
            raise AnnotationError(f"polygon {self.name!r}: vertices must be (N, 2) x, y pairs, got shape {l0_xy.shape}")
        if len(l0_xy) < MIN_POLYGON_VERTICES:
            raise AnnotationError(
                f"polygon {self.name!r} has {count_noun(len(l0_xy), 'vertex', 'vertices')}; a polygon needs at least "
                f"{MIN_POLYGON_VERTICES}"
            )
        if not np.isfinite(l0_xy).all():
            raise AnnotationError(f"polygon {self.name!r} has a non-finite vertex")
        if np.abs(l0_xy).max() > MAX_ABS_L0_PX:
            raise AnnotationError(
                f"polygon {self.name!r} has a vertex beyond {MAX_ABS_L0_PX} px "
                f"({np.abs(l0_xy).max():.3g}); no slide is that large"
            )
        l0_xy.flags.writeable = False
        object.__setattr__(self, "l0_xy", l0_xy)


@dataclass(frozen=True)
class SlideAnnotations:
    """Tumour polygons and exclusion polygons (holes / non-tumour regions inside lesions)."""

    tumour: tuple[Polygon, ...] = ()
    exclusions: tuple[Polygon, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.tumour

    def by_role(self) -> tuple[tuple[Role, tuple[Polygon, ...]], ...]:
        """(role, polygons) pairs, tumour first: what writers iterate over."""
        return (("tumour", self.tumour), ("exclusion", self.exclusions))


def contours_to_annotations(
    l0_contours: Sequence[np.ndarray], group: str = "Tumor", name_prefix: str = "Lesion"
) -> SlideAnnotations:
    """Wrap lesion contours ((N, 2) level-0 x, y arrays) as tumour polygons, so every writer
    (ASAP, GeoJSON) takes the one `SlideAnnotations` form; names are `"{prefix} {i}"`."""
    return SlideAnnotations(
        tumour=tuple(
            Polygon(name=f"{name_prefix} {i}", group=group, l0_xy=contour) for i, contour in enumerate(l0_contours)
        )
    )
