"""`pcam-scan model-info CKPT [--json]`: check a checkpoint fully and say what model it holds."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "model-info",
        help="check a .safetensors checkpoint and print its model id and metadata",
        description="Load a checkpoint the way the scanner does (every check included) and print "
        "its model id (sha256 of the weights), architecture, classes, geometry, normalisation "
        "and training provenance.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="path to a pcam-scan .safetensors checkpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.set_defaults(func=handle)


def describe(checkpoint: str) -> dict[str, Any]:
    """The checked checkpoint as a JSON-able record."""
    from pcam_scan.model.checkpoint import load_checkpoint
    from pcam_scan.wording import NOT_CALIBRATED

    loaded = load_checkpoint(checkpoint, device="cpu")
    calibration = loaded.metadata.calibration
    return {
        "path": str(loaded.path),
        "model_id": loaded.model_id,
        "n_parameters": loaded.n_parameters,
        "file_bytes": loaded.path.stat().st_size,
        "metadata": loaded.metadata.to_dict(),
        # `calibrated (T=..., on ...)` or `not calibrated`, worded as diagnose and the viewer say it
        "calibration": NOT_CALIBRATED if calibration is None else calibration.describe(),
    }


def _table(info: dict[str, Any]) -> str:
    meta = info["metadata"]
    prov = meta["provenance"]
    norm = meta["normalisation"]
    classes = ", ".join(meta["classes"])
    tumour = meta["classes"][meta["tumour_index"]]
    rows = [
        ("checkpoint", f"{info['path']} ({info['file_bytes'] / 1e6:.1f} MB)"),
        ("model id", info["model_id"]),
        ("architecture", f"{meta['architecture']} ({info['n_parameters'] / 1e6:.2f} M parameters)"),
        ("classes", f"{classes} (tumour: index {meta['tumour_index']}, {tumour!r})"),
        ("patches", f"{meta['patch_px']} px at {meta['mpp_um_px']} um/px, label = centre {meta['label_px']} px"),
        ("network input", f"{meta['input_px']} px"),
        ("normalisation", f"mean {norm['mean']} std {norm['std']} (pixels in [0, 1])"),
        ("calibration", info["calibration"]),
        ("trained on", prov["data"]),
        ("date", prov["date"]),
        ("metrics", ", ".join(f"{k}={v:g}" for k, v in sorted(prov["metrics"].items())) or "-"),
        ("details", ", ".join(f"{k}={v}" for k, v in sorted(prov["details"].items())) or "-"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def handle(args: argparse.Namespace) -> int:
    info = describe(args.checkpoint)
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else _table(info))
    return 0
