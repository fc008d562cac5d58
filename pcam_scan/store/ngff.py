"""OME-NGFF 0.5 `multiscales` metadata for the `prob` pyramid, so OME-Zarr readers open it.

Version 0.5 is the OME-Zarr version for Zarr v3: the metadata lives under the `ome` key of the
group's attributes, and each level array carries `dimension_names` equal to the axis names.

Physical space: micrometres from the slide's top-left corner, axes (y, x). A level-k pixel covers
2**k x 2**k cells, so its scale is `cell_um * 2**k`, and its translation puts its centre at the
centre of the area it covers: `cell_um * 2**k / 2` (pixel centres, the OME-NGFF convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pcam_scan.errors import StoreError

NGFF_VERSION = "0.5"
AXES: tuple[str, str] = ("y", "x")


def level_scale_um(cell_um: float, level: int) -> float:
    return cell_um * float(2**level)


def multiscales_attrs(name: str, n_levels: int, cell_um: float, pooling: str) -> dict[str, object]:
    """The `ome` attribute of a multiscale group whose levels are arrays "0", "1", ..."""
    datasets = []
    for level in range(n_levels):
        scale_um = level_scale_um(cell_um, level)
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [scale_um, scale_um]},
                    {"type": "translation", "translation": [scale_um / 2, scale_um / 2]},
                ],
            }
        )
    multiscale = {
        "name": name,
        "axes": [{"name": axis, "type": "space", "unit": "micrometer"} for axis in AXES],
        "datasets": datasets,
        "type": pooling,
        "metadata": {
            "description": f"2x2 NaN-aware {pooling} pooling per level (pcam_scan.store.pyramid)",
        },
    }
    return {"version": NGFF_VERSION, "multiscales": [multiscale]}


def level_paths(ome_attrs: Mapping[str, object]) -> list[str]:
    """Array paths of the levels, finest first, from a group's `ome` attribute."""
    multiscales = ome_attrs.get("multiscales")
    if not isinstance(multiscales, Sequence) or not multiscales:
        raise StoreError("prob group has no OME-NGFF multiscales metadata")
    datasets = multiscales[0].get("datasets") if isinstance(multiscales[0], Mapping) else None
    if not isinstance(datasets, Sequence) or not datasets:
        raise StoreError("prob multiscales metadata lists no datasets")
    return [str(dataset["path"]) for dataset in datasets if isinstance(dataset, Mapping)]
