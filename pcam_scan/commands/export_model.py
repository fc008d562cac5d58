"""`pcam-scan export-model CKPT --format wsinfer OUT/`: a checkpoint as a model other tools run.

`wsinfer` writes `OUT/torchscript_model.pt` (TorchScript returning the network's logits) and
`OUT/config.json` (valid against wsinfer-zoo's model-config schema: patch size and MPP, the
Resize / ToTensor / Normalize transforms, the class names), the folder QuPath's WSInfer extension
and `wsinfer run --model-path OUT/torchscript_model.pt --config OUT/config.json` load. Needs the
wsinfer extra (`pip install 'pcam-scan[wsinfer]'`) for the schema. Existing files are kept
unless --overwrite is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcam_scan.commands.options import add_overwrite_option

FORMATS = ("wsinfer",)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export-model",
        help="write a checkpoint as a WSInfer model folder (TorchScript + config.json) for QuPath and WSInfer",
        description=__doc__,
    )
    parser.add_argument("checkpoint", metavar="CKPT", type=Path, help="a pcam-scan .safetensors checkpoint")
    parser.add_argument("--format", required=True, choices=FORMATS, help="model format")
    parser.add_argument("out", metavar="OUT", type=Path, help="folder to write the model into")
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.model.interop.wsinfer_export import export_wsinfer

    script, config = export_wsinfer(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"{args.checkpoint} -> {script}, {config}")
    print(f"run it: wsinfer run --wsi-dir SLIDES --results-dir RESULTS --model-path {script} --config {config}")
    return 0
