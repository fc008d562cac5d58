"""WSInfer's model `config.json`: checked against wsinfer-zoo's JSON schema, built from a
checkpoint's metadata, and read back into pcam-scan's terms.

The schema is the one the wsinfer-zoo package ships (`wsinfer_zoo/schemas/model-config.schema.json`,
the file `wsinfer_zoo.client.validate_config_json` and so `wsinfer run --config` use), read from
the installed package without importing it (its client imports huggingface_hub). Required keys:
spec_version "1.0", architecture, num_classes, patch_size_pixels, spacing_um_px, class_names and
transform (a list of Resize / ToTensor / Normalize with torchvision's keyword arguments). Other
keys are allowed: an export adds `pcam_scan` (the geometry WSInfer has no word for: the network
input size, the label square and rule, the tumour class, the model id) so that a round trip
loses nothing.

WSInfer's data path (wsinfer 0.6.1 `modellib/data.py`, `run_inference.py`): a level-0 patch of
round(patch_size_pixels x spacing_um_px / slide MPP) px, PIL RGB, the transforms in order, the
model, then a softmax over the outputs (a sigmoid for one output). A patch is one label: the
whole patch.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcam_scan.errors import CheckpointError, ConfigError
from pcam_scan.geometry import LabelRule, check_label_rule
from pcam_scan.model.metadata import ModelMetadata, Normalisation
from pcam_scan.model.names import TORCHVISION_RESNETS
from pcam_scan.wording import count_noun

CONFIG_NAME = "config.json"
TORCHSCRIPT_NAME = "torchscript_model.pt"
"""wsinfer_zoo.client's HF_CONFIG_NAME and HF_TORCHSCRIPT_NAME: a zoo model folder's two files."""
SPEC_VERSION = "1.0"
EXTRA_KEY = "pcam_scan"
WHOLE_PATCH_LABEL_RULE: LabelRule = "centre-majority"
"""The label rule recorded for a WSInfer model whose config says nothing about it: its label is
the whole patch, taken as tumour over half of it (region-annotated patch datasets' usual rule)."""
_TUMOUR_NAME = re.compile(r"tumou?r", re.IGNORECASE)


def model_config_schema() -> dict[str, Any]:
    """wsinfer-zoo's model-config JSON schema, from the installed package's files."""
    spec = importlib.util.find_spec("wsinfer_zoo")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "schemas" / "model-config.schema.json"
        if path.is_file():
            schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return schema
    raise CheckpointError(
        "WSInfer model configs are checked against the schema of the wsinfer-zoo package, "
        "which is not installed: pip install 'pcam-scan[wsinfer]'"
    )


def validate_config(doc: Any, where: str = CONFIG_NAME) -> None:
    """Refuse a config that wsinfer-zoo would refuse: its schema, and as many class names as
    classes (`ModelConfiguration` checks that after the schema)."""
    import jsonschema

    try:
        jsonschema.validate(doc, model_config_schema())
    except jsonschema.ValidationError as err:
        at = "/".join(str(p) for p in err.absolute_path) or "the top level"
        raise CheckpointError(f"{where} is not a valid WSInfer model config: {err.message} (at {at})") from None
    if len(doc["class_names"]) != doc["num_classes"]:
        raise CheckpointError(
            f"{where}: num_classes is {doc['num_classes']} but class_names has "
            f"{count_noun(len(doc['class_names']), 'name')}"
        )


def wsinfer_architecture(architecture: str) -> str:
    """The config's `architecture` (timm names where there is one: torchvision-resnet50 -> resnet50)."""
    by_name = {name: depth for depth, name in TORCHVISION_RESNETS.items()}
    return by_name.get(architecture, architecture)


def config_from_metadata(metadata: ModelMetadata, model_id: str) -> dict[str, Any]:
    """The config.json of an exported model: the network sees `patch_px` px at the checkpoint's
    MPP, scaled to [0, 1] and normalised with its mean and std (the TorchScript resizes to the
    network's input size itself)."""
    return {
        "spec_version": SPEC_VERSION,
        "architecture": wsinfer_architecture(metadata.architecture),
        "num_classes": metadata.n_classes,
        "class_names": list(metadata.classes),
        "patch_size_pixels": metadata.patch_px,
        "spacing_um_px": metadata.mpp_um_px,
        "transform": [
            {"name": "Resize", "arguments": {"size": metadata.patch_px}},
            {"name": "ToTensor"},
            {
                "name": "Normalize",
                "arguments": {"mean": list(metadata.normalisation.mean), "std": list(metadata.normalisation.std)},
            },
        ],
        EXTRA_KEY: {
            "architecture": metadata.architecture,
            "input_px": metadata.input_px,
            "label_px": metadata.label_px,
            "label_rule": metadata.label_rule,
            "tumour_index": metadata.tumour_index,
            "model_id": model_id,
        },
    }


@dataclass(frozen=True)
class WsinferModel:
    """A WSInfer config in pcam-scan's terms. `fed_px` is the side of what WSInfer hands the
    TorchScript (the Resize size); the scanner reads `patch_px` at `mpp_um_px` and resizes
    to `input_px` itself."""

    architecture: str
    classes: tuple[str, ...]
    tumour_index: int
    patch_px: int
    mpp_um_px: float
    fed_px: int
    input_px: int
    label_px: int
    label_rule: LabelRule
    normalisation: Normalisation
    exported_by_pcam_scan: bool


def read_config(doc: dict[str, Any], where: str = CONFIG_NAME) -> WsinferModel:
    """A valid config as pcam-scan would run it, or one CheckpointError line naming what
    pcam-scan cannot honour."""
    validate_config(doc, where)
    extra = doc.get(EXTRA_KEY)
    ours = isinstance(extra, dict)
    extra = extra if isinstance(extra, dict) else {}
    classes = tuple(doc["class_names"])
    if len(classes) < 2:
        raise CheckpointError(
            f"{where}: a model of {len(classes)} output (WSInfer applies a sigmoid) cannot run here; "
            "pcam-scan needs a softmax over 2 or more classes"
        )
    fed_px, normalisation = _transforms(doc["transform"], doc["patch_size_pixels"], where)
    patch_px = int(doc["patch_size_pixels"])
    return WsinferModel(
        architecture=_architecture(doc["architecture"], extra, where),
        classes=classes,
        tumour_index=_tumour_index(classes, extra, where),
        patch_px=patch_px,
        mpp_um_px=float(doc["spacing_um_px"]),
        fed_px=fed_px,
        input_px=int(extra.get("input_px", fed_px)),
        label_px=int(extra.get("label_px", patch_px)),
        label_rule=_label_rule(extra.get("label_rule", WHOLE_PATCH_LABEL_RULE), where),
        normalisation=normalisation,
        exported_by_pcam_scan=ours,
    )


def _label_rule(value: object, where: str) -> LabelRule:
    try:
        return check_label_rule(value)
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from None


def _architecture(name: str, extra: dict[str, Any], where: str) -> str:
    from pcam_scan.model.names import ARCHITECTURE_NAMES

    if extra.get("architecture") in ARCHITECTURE_NAMES:
        return str(extra["architecture"])
    if name in TORCHVISION_RESNETS:
        return TORCHVISION_RESNETS[name]
    raise CheckpointError(
        f"{where}: architecture {name!r} cannot run here; pcam-scan takes {', '.join(TORCHVISION_RESNETS)} "
        "(torchvision / timm layout) or a model it exported"
    )


def _tumour_index(classes: tuple[str, ...], extra: dict[str, Any], where: str) -> int:
    if isinstance(extra.get("tumour_index"), int):
        return int(extra["tumour_index"])
    found = [i for i, name in enumerate(classes) if _TUMOUR_NAME.search(name)]
    if len(found) != 1:
        raise CheckpointError(
            f"{where}: no single tumour class among {list(classes)}; pcam-scan scores P(tumour) and needs "
            "exactly one class named tumour or tumor"
        )
    return found[0]


def _transforms(steps: list[dict[str, Any]], patch_px: int, where: str) -> tuple[int, Normalisation]:
    """(side fed to the model, normalisation) of Resize? -> ToTensor -> Normalize?, the order
    in which the scanner's own preprocessing runs; any other sequence is refused."""
    names = [step["name"] for step in steps]
    if names not in (
        ["Resize", "ToTensor", "Normalize"],
        ["Resize", "ToTensor"],
        ["ToTensor", "Normalize"],
        ["ToTensor"],
    ):
        raise CheckpointError(
            f"{where}: transforms {' -> '.join(names) or 'none'} differ from pcam-scan's preprocessing "
            "(Resize -> ToTensor -> Normalize, Resize and Normalize optional)"
        )
    fed_px = patch_px
    normalisation = Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    for step in steps:
        args = step.get("arguments") or {}
        if step["name"] == "Resize":
            fed_px = _resize_size(args, where)
        elif step["name"] == "Normalize":
            if set(args) - {"mean", "std"} or len(args.get("mean", [])) != 3 or len(args.get("std", [])) != 3:
                raise CheckpointError(f"{where}: Normalize needs 3 means and 3 stds and nothing else, got {args}")
            normalisation = Normalisation(
                mean=tuple(float(v) for v in args["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in args["std"]),  # type: ignore[arg-type]
            )
    return fed_px, normalisation


def _resize_size(args: dict[str, Any], where: str) -> int:
    size = args.get("size")
    if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if set(args) != {"size"} or not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise CheckpointError(
            f"{where}: Resize {args} is not a square resize to a size in px (pcam-scan's only resize)"
        )
    return size
