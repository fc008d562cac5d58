"""`pcam-scan import-model --from tiatoolbox|wsinfer SOURCE --out OUT.safetensors`: published
models as pcam-scan checkpoints.

- `--from tiatoolbox FILE.pth --arch resnet18|resnet34|resnet50`: TIAToolbox's PCam classifiers
  (`resnet50-pcam.pth`, ...), a state dict loaded with torch.load(weights_only=True). Scanned at
  TIAToolbox's geometry: 96 px patches at 1.0 um/px, [0, 1] input, PCam's centre 32 px label.
- `--from wsinfer DIR`: a WSInfer model folder (config.json + torchscript_model.pt) whose
  preprocessing and architecture pcam-scan can honour (ResNet18/34/50, Resize -> ToTensor ->
  Normalize, a tumour class); scanned at its own patch size and MPP, one heatmap cell per patch
  (WSInfer labels the whole patch). Anything else is refused in one line.

The checkpoint records where the weights came from (`pcam-scan model-info`). An existing OUT is
kept unless --overwrite is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcam_scan.commands.options import add_overwrite_option
from pcam_scan.errors import ConfigError
from pcam_scan.model.names import TORCHVISION_RESNETS

SOURCES = ("tiatoolbox", "wsinfer")
ARCHS = tuple(TORCHVISION_RESNETS)  # the TIAToolbox backbones pcam-scan can run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import-model",
        help="convert a TIAToolbox PCam .pth or a WSInfer model folder into a pcam-scan checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="source_kind", required=True, choices=SOURCES, help="where the model is from")
    parser.add_argument("source", metavar="SOURCE", type=Path, help="TIAToolbox .pth file or WSInfer model folder")
    parser.add_argument("--arch", choices=ARCHS, default=None, help="TIAToolbox backbone (--from tiatoolbox only)")
    parser.add_argument("--out", required=True, type=Path, help="the .safetensors checkpoint to write")
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.outputs import check_output_file

    check_output_file(args.out, args.overwrite)
    if args.source_kind == "tiatoolbox":
        from pcam_scan.model.interop.tiatoolbox import import_tiatoolbox

        if args.arch is None:
            raise ConfigError(f"--from tiatoolbox needs --arch ({', '.join(ARCHS)}): the .pth does not say")
        model_id, meta = import_tiatoolbox(args.source, args.arch, args.out, overwrite=args.overwrite)
        checked = ""
    else:
        from pcam_scan.model.interop.wsinfer_import import import_wsinfer

        if args.arch is not None:
            raise ConfigError("--arch is for --from tiatoolbox; a WSInfer folder names its architecture")
        model_id, meta, delta = import_wsinfer(args.source, args.out, overwrite=args.overwrite)
        checked = f"; TorchScript and checkpoint agree to max |delta p| {delta:.1g}"
    print(
        f"{args.source} -> {args.out}: {meta.architecture}, {meta.patch_px} px at {meta.mpp_um_px} um/px, "
        f"label {meta.label_px} px, tumour class {meta.tumour_class!r}, model id {model_id[:12]}{checked}"
    )
    return 0
