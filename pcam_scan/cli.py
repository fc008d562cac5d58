"""The `pcam-scan` command line: builds the parser from the command modules and turns
user-facing errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pcam_scan.errors import PcamScanError

# Each name is a module in pcam_scan.commands with a `register(subparsers)` function.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "info",
    "model_info",
    "evaluate",
    "diagnose",
    "fit_aggregator",
    "export",
    "synth",
    "scan",
    "submit",
    "train",
    "view",
    "render",
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcam-scan",
        description="Scan whole-slide images for metastases with a PatchCamelyon ResNet50.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"pcam_scan.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a `PcamScanError` becomes `pcam-scan: error: ...` and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except PcamScanError as err:
        print(f"pcam-scan: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("pcam-scan: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
